"""Sandbox throughput: MBPP's reference solutions through cope.sandbox against plain
`python -c` subprocesses without isolation, in the same run and with the same workers.

    python benchmarks/sandbox_throughput.py [--data ../shared/data] [--workers N]

The baseline is `python -I -S -c "<code, set-up, tests>"` (no isolation, no
site-packages: the cheapest start of an interpreter). Both run each of the 499 test-split
references with its tests (task 123, a quadratic
search that takes seconds on its own, is left out: it measures the CPU, not the sandbox).
Writes benchmarks/results/sandbox_throughput.json with candidates per second of both and
their ratio (goal: the sandbox keeps >= 0.5 of the plain rate; thousands of candidates in
minutes).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("COPE_SHARED_DATA", "../shared/data")))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    rows = references(args.data)
    sandbox = Sandbox(workers=args.workers)
    sandboxed(rows[:8], sandbox)  # warm the page cache for both
    plain_s, plain_passed = plain(rows, sandbox.workers)
    sandbox_s, sandbox_passed = sandboxed(rows, sandbox)
    result = {
        "programs": len(rows),
        "workers": sandbox.workers,
        "cpus": os.cpu_count(),
        "isolation": sandbox.isolation.layers,
        "plain_s": round(plain_s, 2),
        "plain_per_s": round(len(rows) / plain_s, 2),
        "plain_passed": plain_passed,
        "sandbox_s": round(sandbox_s, 2),
        "sandbox_per_s": round(len(rows) / sandbox_s, 2),
        "sandbox_passed": sandbox_passed,
        "ratio": round(plain_s / sandbox_s, 3),
        "goal": ">= 0.5 of the plain rate",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
