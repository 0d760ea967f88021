"""Calibrated cascades on this machine: COPE, MoT verify, ABC and FrugalGPT tuned on dev
problems, each applied once to the test problems the CPU reproduction uses (SETUPS below).

    python experiments/calibration/run.py             # every step, or resume where it stopped
    python experiments/calibration/run.py pools       # the dev pools and large alone on dev
    python experiments/calibration/run.py calibrate   # calibrate on the finished pools
    python experiments/calibration/run.py test        # the calibrated configurations on test
    python experiments/calibration/run.py --task mbpp # the same on MBPP

- pools: experiment=pool at each method's largest votes; large alone on dev is the
  reference the accuracy target is relative to. FrugalGPT's scorer is the CPU reproduction's,
  trained on problems neither split holds.
- every run is resumable (resume=true) and the generation cache's archive
  (generations.jsonl.gz beside the runs, committed) is rewritten every 10 minutes, so a stop
  loses at most 10 minutes of generations; on a fresh clone the cache is rebuilt from it.
- continuous batching as in the quickstart, so that fewer votes reuse a pool's samples.
- the test runs on GSM8K start from the generations of the 100-problem continuous COPE cell
  (benchmarks/results/cpu_cell, the same test problems and model identities): a request it
  already made replays, as it would from any earlier run's cache, and the rest is generated.

Results go to experiments/results/calibration-<task>-cpu/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cope.cache_archive import import_archive, kept_in_archive

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results"
SETUPS = {
    # dev: GSM8K test problems 200-299, disjoint from the evaluated first 100 and from the
    # 1119-1318 FrugalGPT's scorer trained on; test: the first 100
    "gsm8k": {"task": ["task=gsm8k"], "dev": ["task.offset=200", "task.limit=100"],
              "test": ["task.offset=0", "task.limit=100"], "methods": ["frugalgpt", "abc",
                                                                       "mot_verify", "cope"],
              "reuse": [ROOT / "benchmarks" / "results" / "cpu_cell" / "generations.jsonl.gz"]},
    # dev: MBPP's validation split (task ids 511-600); test: the first 100 test problems, as
    # the CPU reproduction judges them (on tests derived from the reference solutions). MoT
    # has no program-of-thought prompt for code. The scorer trained on the train split.
    "mbpp": {"task": ["task=mbpp", f"task.source={ROOT.parent / 'shared' / 'data'}",
                      "task.hidden_tests="
                      f"{ROOT / 'experiments' / 'data' / 'mbpp_derived_tests.jsonl'}"],
             "dev": ["task.split=validation"], "test": ["task.split=test", "task.limit=100"],
             "methods": ["frugalgpt", "abc", "cope"]},
}
BATCHING = ["pair=qwen-coder-cpu", "backend=llamacpp", "backend.batching=continuous",
            "backend.batch_size=32", "backend.batch_n_ctx=32768", "concurrency=16",
            "progress=false", "tracker=none", "resume=true"]
METHODS = {  # cell -> overrides
    "frugalgpt": ["experiment=pool", "method=frugalgpt"],
    "abc": ["experiment=pool", "method=abc", "pair=tiers-cpu"],
    "mot_verify": ["experiment=pool", "method=mot_verify"],
    "cope": ["experiment=pool", "method=cope"],
}
# Pareto Testing certifies on half the dev problems: at delta 0.1 even a configuration
# answering exactly as large alone does needs 91 of them for epsilon 0.05 and 44 for 0.1
# (cope.calibration.risk.fewest_problems), so both are asked; calibrating is free
TARGETS = {"accuracy-0.05": "accuracy>=large-0.05", "accuracy-0.1": "accuracy>=large-0.1",
           "cost-0.6": "cost<=0.6*large"}
# every vote count too: fewer votes reuse a pool's first samples (continuous batching), and
# the structures whose later stages would need generations the pool lacks are left out
SEARCH = "thresholds,votes,order,threshold_op"
DELTA = "0.1"


class Setup:
    def __init__(self, task: str) -> None:
        self.spec = SETUPS[task]
        self.out = RESULTS / f"calibration-{task}-cpu"
        self.cache = self.out / "generations.sqlite"
        self.archive = self.out / "generations.jsonl.gz"
        self.common = [*self.spec["task"], *BATCHING, f"cache.path={self.cache}"]
        scorer = RESULTS / f"{task}-cpu-training" / "frugalgpt-scorer.json"
        # large alone first (the reference; the cascades' large executions are its own, so
        # they come from the cache), then the cheap pools
        self.pools = {"large": ["method=large"],
                      **{m: METHODS[m] for m in self.spec["methods"]}}
        self.pools["frugalgpt"] = [*self.pools["frugalgpt"],
                                   f"method.stages.small.scorer={scorer}"]


def cope(*args: str) -> None:
    code = subprocess.call([sys.executable, "-m", "cope.cli", *args], cwd=ROOT)
    if code != 0:
        raise SystemExit(f"cope {' '.join(args)} stopped with exit code {code}; run again to "
                         "resume")


def finished(run_dir: Path) -> bool:
    metrics = run_dir / "metrics.json"
    return metrics.exists() and json.loads(metrics.read_text()).get("finished", False)


def pools(setup: Setup) -> None:
    for cell, overrides in setup.pools.items():
        run_dir = setup.out / "dev" / cell
        if not finished(run_dir):
            cope(*setup.common, *setup.spec["dev"], *overrides, f"run_dir={run_dir}")


def calibrate(setup: Setup) -> None:
    methods = [str(setup.out / "dev" / cell) for cell in setup.pools if cell != "large"]
    for name, target in TARGETS.items():
        subprocess.call([sys.executable, "-m", "cope.cli", "calibrate", *methods,
                         "--reference", str(setup.out / "dev" / "large"), "--target", target,
                         "--delta", DELTA, "--search", SEARCH, "--test", *setup.spec["test"],
                         "--out", str(setup.out / "calibration" / name)], cwd=ROOT)


def test(setup: Setup) -> None:
    for archive in setup.spec.get("reuse", []):
        total, added = import_archive(archive, setup.cache)
        print(f"{archive.relative_to(ROOT)}: {added} of its {total} generations are new here")
    large = setup.out / "test" / "large"
    if not finished(large):
        cope(*setup.common, *setup.spec["test"], "method=large", f"run_dir={large}")
    for name in TARGETS:
        directory = setup.out / "calibration" / name
        for path in sorted((directory / "experiment").glob("calibrated_*.yaml")):
            run_dir = setup.out / "test" / name / path.stem.removeprefix("calibrated_")
            if not finished(run_dir):
                cope(f"hydra.searchpath=[file://{directory}]", f"experiment={path.stem}",
                     "resume=true", f"cache.path={setup.cache}", f"run_dir={run_dir}")
        subprocess.call([sys.executable, "-m", "analysis.calibration", str(directory),
                         "--runs", str(setup.out / "test" / name), "--large", str(large)],
                        cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # steps are checked here: argparse before 3.12 rejects an empty "*" list with choices
    parser.add_argument("steps", nargs="*", help="pools, calibrate, test (default: all)")
    parser.add_argument("--task", choices=sorted(SETUPS), default="gsm8k")
    args = parser.parse_args()
    steps = {"pools": pools, "calibrate": calibrate, "test": test}
    unknown = sorted(set(args.steps) - set(steps))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {sorted(steps)}")
    setup = Setup(args.task)
    setup.out.mkdir(parents=True, exist_ok=True)
    with kept_in_archive(setup.cache, setup.archive):
        for step in args.steps or list(steps):
            steps[step](setup)


if __name__ == "__main__":
    main()
