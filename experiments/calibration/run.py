"""Calibrated cascades on this machine: COPE, MoT verify, ABC and FrugalGPT tuned on GSM8K dev
problems, each applied once to the test problems the CPU reproduction uses.

    python experiments/calibration/run.py             # every step, or resume where it stopped
    python experiments/calibration/run.py pools       # the dev pools and large alone on dev
    python experiments/calibration/run.py calibrate   # calibrate on the finished pools
    python experiments/calibration/run.py test        # the calibrated configurations on test

- dev: GSM8K test problems 200-299, disjoint from the evaluated first 100 and from the
  1119-1318 FrugalGPT's scorer trains on; test: the first 100.
- pools: experiment=pool at each method's largest votes; large alone on dev is the
  reference the accuracy target is relative to. FrugalGPT's scorer is the CPU reproduction's
  (trained on problems 1119-1318).
- every run is resumable (resume=true) and the generation cache's archive
  (generations.jsonl.gz beside the runs, committed) is rewritten every 10 minutes, so a stop
  loses at most 10 minutes of generations; on a fresh clone the cache is rebuilt from it.
- continuous batching as in the quickstart, so that fewer votes reuse a pool's samples.

Results go to experiments/results/calibration-gsm8k-cpu/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cope.cache_archive import kept_in_archive

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "experiments" / "results" / "calibration-gsm8k-cpu"
CACHE = OUT / "generations.sqlite"
ARCHIVE = OUT / "generations.jsonl.gz"
DEV = ["task.offset=200", "task.limit=100"]
TEST = ["task.offset=0", "task.limit=100"]
COMMON = ["task=gsm8k", "pair=qwen-coder-cpu", "backend=llamacpp", "backend.batching=continuous",
          "backend.batch_size=32", "backend.batch_n_ctx=32768", "concurrency=16",
          "progress=false", "tracker=none", "resume=true", f"cache.path={CACHE}"]
SCORER = ROOT / "experiments" / "results" / "gsm8k-cpu-training" / "frugalgpt-scorer.json"
POOLS = {  # cell -> overrides, in the order they run: the cheap ones first (their large-model
    # executions are large alone's, so they come from the cache)
    "large": ["method=large"],
    "frugalgpt": ["experiment=pool", "method=frugalgpt", f"method.stages.small.scorer={SCORER}"],
    "abc": ["experiment=pool", "method=abc", "pair=tiers-cpu"],
    "mot_verify": ["experiment=pool", "method=mot_verify"],
    "cope": ["experiment=pool", "method=cope"],
}
TARGETS = {"accuracy": "accuracy>=large-0.05", "cost": "cost<=0.6*large"}
SEARCH = "thresholds,order,threshold_op"
DELTA = "0.1"


def cope(*args: str) -> None:
    code = subprocess.call([sys.executable, "-m", "cope.cli", *args], cwd=ROOT)
    if code != 0:
        raise SystemExit(f"cope {' '.join(args)} stopped with exit code {code}; run again to "
                         "resume")


def finished(run_dir: Path) -> bool:
    metrics = run_dir / "metrics.json"
    return metrics.exists() and json.loads(metrics.read_text()).get("finished", False)


def pools() -> None:
    for cell, overrides in POOLS.items():
        run_dir = OUT / "dev" / cell
        if not finished(run_dir):
            cope(*COMMON, *DEV, *overrides, f"run_dir={run_dir}")


def calibrate() -> None:
    methods = [str(OUT / "dev" / cell) for cell in POOLS if cell != "large"]
    for name, target in TARGETS.items():
        subprocess.call([sys.executable, "-m", "cope.cli", "calibrate", *methods,
                         "--reference", str(OUT / "dev" / "large"), "--target", target,
                         "--delta", DELTA, "--search", SEARCH, "--test", *TEST,
                         "--out", str(OUT / "calibration" / name)], cwd=ROOT)


def test() -> None:
    if not finished(OUT / "test" / "large"):
        cope(*COMMON, *TEST, "method=large", f"run_dir={OUT / 'test' / 'large'}")
    for name in TARGETS:
        directory = OUT / "calibration" / name
        for path in sorted((directory / "experiment").glob("calibrated_*.yaml")):
            run_dir = OUT / "test" / name / path.stem.removeprefix("calibrated_")
            if not finished(run_dir):
                cope(f"hydra.searchpath=[file://{directory}]", f"experiment={path.stem}",
                     "resume=true", f"cache.path={CACHE}", f"run_dir={run_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="*", choices=["pools", "calibrate", "test"],
                        default=["pools", "calibrate", "test"])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with kept_in_archive(CACHE, ARCHIVE):
        for step in args.steps:
            {"pools": pools, "calibrate": calibrate, "test": test}[step]()


if __name__ == "__main__":
    main()
