"""The HTTP request path of this checkout against a baseline revision, in one run: each
round runs benchmarks/http_paths.py's overhead figure (cope's engine path and its whole run,
each against a bare aiohttp loop sending the same requests to the same stub) first in a
git worktree of the baseline, then here. Both sides are ratios to a bare loop measured in the
same turn, and the rounds interleave, so the machine's drift falls on both.

    python benchmarks/http_paths_against.py [--baseline df4b78d] [--rounds 6] [--loop uvloop]

The default baseline is the revision whose http_paths.json was committed before continuous
batching and the cache's settings keys changed the request path. Goal: each of this
checkout's ratios within 5% of the baseline's (current / baseline >= 0.95).

Writes benchmarks/results/http_paths_against.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "http_paths_against.json"
FIGURES = ("engine_ratio", "run_ratio")


def overhead(checkout: Path, loop: str, repeats: int, requests: int) -> dict[str, float]:
    """Median per-turn ratios of one http_paths.py run in `checkout`."""
    out = checkout / "benchmarks" / "results" / "http_paths.json"
    before = out.read_bytes() if out.exists() else None
    args = [sys.executable, "benchmarks/http_paths.py", "--only", "overhead", "--loops", loop,
            "--repeats", str(repeats), "--requests", str(requests)]
    try:
        subprocess.run(args, cwd=checkout, check=True, capture_output=True)
        turns = json.loads(out.read_text())["overhead"][loop]["turns"]
    finally:  # the checkout's committed figures stay as they were
        if before is None:
            out.unlink(missing_ok=True)
        else:
            out.write_bytes(before)
    return {figure: statistics.median(turn[figure] for turn in turns) for figure in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="df4b78d")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--loop", default="uvloop", choices=["asyncio", "uvloop"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rounds = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory(prefix="cope-baseline-") as scratch:
        worktree = Path(scratch) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree),
                        args.baseline], cwd=ROOT, check=True)
        try:
            for _ in range(args.rounds):
                rounds["baseline"].append(overhead(worktree, args.loop, args.repeats, args.requests))
                rounds["current"].append(overhead(ROOT, args.loop, args.repeats, args.requests))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
    medians = {side: {f: round(statistics.median(r[f] for r in runs), 3) for f in FIGURES}
               for side, runs in rounds.items()}
    result = {
        "baseline": args.baseline, "loop": args.loop, "rounds": args.rounds,
        "per_round": rounds, "median": medians,
        "current_over_baseline": {f: round(medians["current"][f] / medians["baseline"][f], 3)
                                  for f in FIGURES},
        "goal": "current / baseline >= 0.95 on each figure",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("median", "current_over_baseline")}, indent=1))


if __name__ == "__main__":
    main()
