"""One 100-problem cell of the CPU reproduction (COPE on GSM8K, the packaged CPU pair) with
continuous batching, timed against the committed cell (experiments/results/gsm8k-cpu/cope),
which the fixed path made.

    python benchmarks/cpu_cell.py            # run the cell, or resume it, then compare
    python benchmarks/cpu_cell.py --compare  # compare what has finished, run nothing

Stoppable at any moment: the run directory (benchmarks/results/cpu_cell/cope) keeps finished
problems and resumes; the cache beside it keeps the generations of problems in flight, and
its archive (generations.jsonl.gz, committed; written every 10 minutes and at the end, read
into an empty cache at the start) carries them to the next machine, so a stop loses at most
10 minutes of generations; every 30 s the time spent so far is written to
benchmarks/results/cpu_cell/segments.json, so a stop loses at most 30 s of the timing.

Compared:
- time: the new cell's run time (its segments) against the committed cell's decode time, the
  sum of its batches' latencies from its samples.jsonl (concurrency 1: one batch at a time,
  so that sum is its wall time but for the Python between batches);
- generated tokens per second on each side;
- answers, problem by problem: McNemar exact on correctness, Wilcoxon signed-rank on stage 1's
  consensus (cpu_limit.compare).
The committed cell ran on another machine, in an earlier session; `cpu_limit.json` measures
the fixed and continuous paths against each other on one machine in one run.

Writes benchmarks/results/cpu_cell/summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from cope.cache_archive import kept_in_archive

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "cpu_cell"
RUN_DIR = OUT / "cope"
SEGMENTS = OUT / "segments.json"
CACHE = OUT / "generations.sqlite"
ARCHIVE = OUT / "generations.jsonl.gz"
COMMITTED = ROOT / "experiments" / "results" / "gsm8k-cpu" / "cope"
CELL = ["task=gsm8k", "task.limit=100", "pair=qwen-coder-cpu", "method=cope",
        "backend=llamacpp", "backend.batching=continuous", "backend.batch_size=32",
        "backend.batch_n_ctx=32768", "concurrency=16", "progress=false", "tracker=none",
        "resume=true", f"run_dir={RUN_DIR}", f"cache.path={CACHE}"]
HEARTBEAT_S = 30
ARCHIVE_EVERY_S = 600


def _segments() -> list[dict]:
    return json.loads(SEGMENTS.read_text()) if SEGMENTS.exists() else []


def run_cell() -> int:
    """Run (or resume) the cell, keeping this segment's time in SEGMENTS as it goes."""
    OUT.mkdir(parents=True, exist_ok=True)
    segments = _segments()
    segment = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": 0.0,
               "finished_problems_before": _count_problems()}
    segments.append(segment)
    start = time.perf_counter()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            segment["seconds"] = round(time.perf_counter() - start, 1)
            SEGMENTS.write_text(json.dumps(segments, indent=1) + "\n")

    threading.Thread(target=beat, daemon=True).start()
    try:
        with kept_in_archive(CACHE, ARCHIVE, ARCHIVE_EVERY_S):
            code = subprocess.call([sys.executable, "-m", "cope.cli", *CELL], cwd=ROOT)
    finally:
        stop.set()
        segment["seconds"] = round(time.perf_counter() - start, 1)
        segment["finished_problems_after"] = _count_problems()
        SEGMENTS.write_text(json.dumps(segments, indent=1) + "\n")
    return code


def _count_problems() -> int:
    path = RUN_DIR / "problems.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _problems(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "problems.jsonl").read_text().splitlines()]
    return [{"id": r["id"], "correct": r["correct"], "resolved_stage": r["resolved_stage"],
             "consensus": {st["stage"]: st["consensus"] for st in r["stages"]}} for r in rows]


def committed_decode_time(run_dir: Path) -> dict:
    """Decode seconds and tokens of a fixed-path cell, from its samples: every sample of a
    batch records the batch's latency, so each (problem, stage, role, model) counts once."""
    latency: dict[tuple, float] = {}
    tokens: dict[str, int] = defaultdict(int)
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        sample = json.loads(line)
        key = (sample["problem_id"], sample["stage"], sample["role"], sample["model"])
        latency[key] = max(latency.get(key, 0.0), sample["latency_s"] or 0.0)
        tokens[sample["model"]] += sample["completion_tokens"]
    return {"batches": len(latency), "decode_s": round(sum(latency.values()), 1),
            "completion_tokens": dict(tokens)}


def summarise() -> dict:
    from cpu_limit import compare  # noqa: PLC0415 - a sibling script

    new = _problems(RUN_DIR)
    done = {p["id"] for p in new}
    committed_problems = _problems(COMMITTED)
    old = [p for p in committed_problems if p["id"] in done]
    metrics_path = RUN_DIR / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    segments = _segments()
    seconds = sum(s["seconds"] for s in segments)
    committed = committed_decode_time(COMMITTED)
    new_tokens = sum(t["completion"] for t in metrics.get("tokens_by_model", {}).values())
    old_tokens = sum(committed["completion_tokens"].values())
    summary = {
        "finished_problems": len(new), "of": 100,
        "segments": segments, "run_s": round(seconds, 1),
        "committed": {**committed, "wall_time_s_last_segment": json.loads(
            (COMMITTED / "metrics.json").read_text())["wall_time_s"]},
        "distributions_vs_committed": (compare({"problems": old}, {"problems": new})
                                       if new else None),
    }
    if len(new) == 100 and metrics.get("finished"):
        summary["run_over_committed_decode_time"] = round(seconds / committed["decode_s"], 3)
        summary["generated_tokens_per_s"] = {"continuous": round(new_tokens / seconds, 1),
                                             "committed": round(old_tokens / committed["decode_s"], 1)}
        summary["accuracy"] = {"continuous": metrics["accuracy"],
                               "committed": sum(p["correct"] for p in committed_problems) / 100}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true", help="run nothing, compare only")
    args = parser.parse_args()
    if not args.compare:
        code = run_cell()
        if code != 0:
            raise SystemExit(f"the cell stopped with exit code {code}; run again to resume")
    print(json.dumps(summarise(), indent=1))


if __name__ == "__main__":
    main()
