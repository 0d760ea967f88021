"""How fast `cope view` opens runs, against reading every record (what a viewer that loads
a whole run directory up front would do), measured in the same run.

    python benchmarks/view_load.py                 # the committed GSM8K reproduction and a large run
    python benchmarks/view_load.py --copies 2 --no-browser   # the smallest form

Two directories:
- the committed GSM8K reproduction (experiments/results/gsm8k-cpu: 15 runs, 1,423 problems);
- a large run made from its COPE cell, copied `--copies` times under new problem ids
  (100 copies: 10,000 problems, about 260,000 samples).

For each: the time to build the runs listing, one run's problems page, and the first and a
second problem page (the first indexes samples.jsonl), cold (a fresh viewer) and warm; and,
as the baseline, the time to parse every line of every problems.jsonl and samples.jsonl.
With a browser (Debian's chromium through Playwright), the time from opening the page to the
runs table, the problems table and a problem's stages, against the live server.

Writes benchmarks/results/view_load.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

from cope.view.payloads import RunsDir, file_key
from cope.view.site import Pages, serve

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "experiments" / "results" / "gsm8k-cpu"
OUT = ROOT / "benchmarks" / "results" / "view_load.json"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def parse_everything(root: Path) -> tuple[float, int]:
    """The baseline: every record of every run parsed."""
    def read() -> int:
        lines = 0
        for path in sorted(root.rglob("*.jsonl")):
            with path.open("rb") as handle:
                for raw in handle:
                    json.loads(raw)
                    lines += 1
        return lines
    return timed(read)


def large_run(copies: int, into: Path) -> Path:
    """The COPE cell copied `copies` times under new problem ids."""
    source = COMMITTED / "cope"
    run = into / "cope-large"
    run.mkdir(parents=True)
    shutil.copy(source / "config.yaml", run / "config.yaml")
    problems = [json.loads(line) for line in (source / "problems.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (source / "samples.jsonl").read_text().splitlines()]
    with (run / "problems.jsonl").open("w") as p_out, (run / "samples.jsonl").open("w") as s_out:
        for copy in range(copies):
            for problem in problems:
                p_out.write(json.dumps({**problem, "id": f"{problem['id']}-{copy}",
                                        "index": copy * len(problems) + problem["index"]}) + "\n")
            for sample in samples:
                s_out.write(json.dumps({**sample, "problem_id": f"{sample['problem_id']}-{copy}"}) + "\n")
    return run


def server_side(root: Path, run_key: str, problems: tuple[str, str]) -> dict:
    runs = RunsDir(root)
    cold_listing, listing = timed(runs.runs_payload)
    cold_run, _ = timed(lambda: runs.run_payload(run_key))
    first, _ = timed(lambda: runs.problem_payload(run_key, problems[0]))
    second, _ = timed(lambda: runs.problem_payload(run_key, problems[1]))
    warm_listing, _ = timed(runs.runs_payload)
    warm_run, _ = timed(lambda: runs.run_payload(run_key))
    baseline, lines = parse_everything(root)
    return {"runs": len(listing["runs"]), "problems": sum(r["n"] for r in listing["runs"]),
            "record_lines": lines, "listing_cold_s": cold_listing, "listing_warm_s": warm_listing,
            "run_page_cold_s": cold_run, "run_page_warm_s": warm_run,
            "first_problem_s": first, "second_problem_s": second,
            "parse_everything_s": baseline,
            "first_problem_to_parse_everything": (cold_listing + cold_run + first) / baseline}


def in_browser(root: Path, run_key: str, problem: str) -> dict:
    from playwright.sync_api import sync_playwright

    server = serve(Pages(RunsDir(root)), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("[data-test=runs] tbody tr")
            runs_s = time.perf_counter() - start
            start = time.perf_counter()
            page.goto(f"{url}#/run/{file_key(run_key)}")
            page.wait_for_selector("[data-test=problems] tbody tr")
            run_s = time.perf_counter() - start
            start = time.perf_counter()
            page.goto(f"{url}#/run/{file_key(run_key)}/p/{file_key(problem)}")
            page.wait_for_selector("[data-test=stage]")
            problem_s = time.perf_counter() - start
            browser.close()
    finally:
        server.shutdown()
    return {"runs_table_s": runs_s, "problems_table_s": run_s, "problem_stages_s": problem_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    result: dict = {"command": f"python benchmarks/view_load.py --copies {args.copies}"}
    with tempfile.TemporaryDirectory() as tmp:
        large = large_run(args.copies, Path(tmp))
        cases = {"gsm8k_reproduction": (COMMITTED, "cope", ("0", "1")),
                 "large_run": (large.parent, large.name, ("0-0", f"1-{args.copies - 1}"))}
        for name, (root, key, problems) in cases.items():
            result[name] = server_side(root, key, problems)
            if not args.no_browser:
                result[name]["browser"] = in_browser(root, key, problems[1])
            print(name, json.dumps(result[name], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
