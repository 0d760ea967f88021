"""Sandbox throughput: MBPP's reference solutions through cope.sandbox, under every
isolation this machine offers (bwrap, unshare, and process when it may run here), against
plain `python -c` subprocesses without isolation, in the same run and with the same workers.

    python benchmarks/sandbox_throughput.py [--data ../shared/data] [--workers N] [--out FILE]

The baseline is `python -I -S -c "<code, set-up, tests>"` (no isolation, no
site-packages: the cheapest start of an interpreter). Both run each of the 499 test-split
references with its tests (task 123, a quadratic
search that takes seconds on its own, is left out: it measures the CPU, not the sandbox).
Writes benchmarks/results/sandbox_throughput.json with candidates per second of each and
each isolation's ratio to the plain rate (goal: the sandbox keeps >= 0.5 of the plain rate;
thousands of candidates in minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cope.errors import ConfigError
from cope.sandbox import Sandbox, TestJob
from cope.tasks.code_data import MBPP_SPLITS

RESULTS = Path(__file__).parent / "results" / "sandbox_throughput.json"
SLOW = {123}
TIMEOUT_S = 60


def references(data: Path) -> list[dict]:
    low, high = MBPP_SPLITS["test"]
    rows = [json.loads(line) for line in (data / "mbpp.jsonl").read_text().splitlines() if line]
    return [r for r in rows if low <= r["task_id"] <= high and r["task_id"] not in SLOW]


def plain(rows: list[dict], workers: int) -> tuple[float, int]:
    def one(row):
        source = "\n".join([row["code"], row["test_setup_code"], *row["test_list"]])
        # -S: no site-packages, the cheapest interpreter start (the references need only
        # the standard library); a conservative baseline for the sandbox's overhead
        done = subprocess.run([sys.executable, "-I", "-S", "-c", source], capture_output=True,
                              timeout=TIMEOUT_S)
        return done.returncode == 0

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        passed = sum(pool.map(one, rows))
    return time.perf_counter() - start, passed


def sandboxed(rows: list[dict], sandbox: Sandbox) -> tuple[float, int]:
    jobs = [TestJob(r["code"], tuple(r["test_list"]), r["test_setup_code"]) for r in rows]
    start = time.perf_counter()
    results = sandbox.run_tests_batch(jobs, timeout=TIMEOUT_S)
    return time.perf_counter() - start, sum(r.passed for r in results)


def isolations(workers: int | None) -> dict[str, Sandbox]:
    found = {}
    for kind in ("bwrap", "unshare", "process"):
        try:
            found[kind] = Sandbox(workers=workers, isolation=kind)
        except ConfigError as exc:
            print(f"{kind}: not measured ({exc})")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("COPE_SHARED_DATA", "../shared/data")))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="the first N references only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args()
    rows = references(args.data)[:args.limit]
    sandboxes = isolations(args.workers)
    workers = next(iter(sandboxes.values())).workers
    for sandbox in sandboxes.values():
        sandboxed(rows[:8], sandbox)  # warm the page cache
    # the plain rate before and after the sandboxes, so a machine that gets busier or quieter
    # during the run shows in the two figures instead of in the ratios
    plain_s, plain_passed = plain(rows, workers)
    timings = {}
    for kind, sandbox in sandboxes.items():
        timings[kind] = sandboxed(rows, sandbox)
    plain_after_s, _ = plain(rows, workers)
    plain_s = (plain_s + plain_after_s) / 2
    result = {
        "programs": len(rows),
        "workers": workers,
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "uid": os.geteuid(),
        "plain_s": round(plain_s, 2),
        "plain_before_after_s": [round(2 * plain_s - plain_after_s, 2), round(plain_after_s, 2)],
        "plain_per_s": round(len(rows) / plain_s, 2),
        "plain_passed": plain_passed,
        "isolations": {},
        "goal": ">= 0.5 of the plain rate",
    }
    for kind, sandbox in sandboxes.items():
        seconds, passed = timings[kind]
        result["isolations"][kind] = {
            "layers": sandbox.isolation.layers,
            "seconds": round(seconds, 2),
            "per_s": round(len(rows) / seconds, 2),
            "passed": passed,
            "ratio": round(plain_s / seconds, 3),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
