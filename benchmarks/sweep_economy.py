"""Sweep economy: a grid of cascade ablations pays only for its unique generations.

A grid of 80 cells (votes 2/4/8/16 x tau1 0.5/0.75 x tau2 0.5/0.75 x stage lists
S1+S2+S3, S1+S2, S1+S3, S1 alone, S2+S3) on 50 GSM8K problems runs one cell after another on one
shared generation cache, both models served by a request-counting stub (backend=openai, one
request per generation). Because samples are addressed by (prompt, sample index), votes=4
reuses samples 0..3 of votes=16, a threshold change reuses every stage it does not change,
and a stage list reuses the stages it shares.

Goal: all backend requests of the whole grid at most 1.3 x those of the single most
expensive cell run alone (measured again on a fresh cache).

Every request of the grid is a generation no earlier cell made (`grid_requests` equals
`grid_unique_generations`). What no cache can share is reported per stage list
(`unique_to_stage_list`): S2+S3's stage 2 shows the executor g^L alone, a prompt no cell with
stage 1 ever sends, so its executions are new whatever the order of the cells. The ratio is
given for the whole grid and without the S2+S3 cells.

    python benchmarks/sweep_economy.py [--problems 50]

Writes benchmarks/results/sweep_economy.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from cope.config import register_configs
from cope.runner import run
from cope.testing import StubServer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "sweep_economy.json"

VOTES = (2, 4, 8, 16)
TAU1 = (0.5, 0.75)
TAU2 = (0.5, 0.75)
ORDERS = {"s1s2s3": "[s1,s2,s3]", "s1s2": "[s1,s2]", "s1s3": "[s1,s3]", "s1": "[s1]",
          "s2s3": "[s2,s3]"}


def cell_config(stub: StubServer, workdir: Path, problems: int, votes: int, tau1: float,
                tau2: float, order: str, cache: Path):
    name = f"{order}-n{votes}-t{tau1}-{tau2}"
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[
            "task=gsm8k", f"task.limit={problems}", "method=cope", f"method.votes={votes}",
            f"method.tau1={tau1}", f"method.tau2={tau2}", f"method.order={ORDERS[order]}",
            "pair.roles.small=gpt-4o-mini", "pair.roles.large=gpt-4o", "concurrency=16",
            "progress=false", f"run_dir={workdir / name}", f"cache.path={cache}"])
    # both models answer from the stub under their own identities
    for alias in ("gpt-4o-mini", "gpt-4o"):
        cfg.models[alias].base_url = stub.base_url
        cfg.models[alias].api_key_env = None
    return name, cfg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args()
    grid = list(itertools.product(VOTES, TAU1, TAU2, ORDERS))
    cells = []
    unique: set = set()
    by_order: dict[str, set] = {}
    with tempfile.TemporaryDirectory() as tmp, StubServer() as stub:
        workdir = Path(tmp)
        start = time.perf_counter()
        for votes, tau1, tau2, order in grid:
            before = stub.counts["requests"]
            name, cfg = cell_config(stub, workdir, args.problems, votes, tau1, tau2, order,
                                    workdir / "grid.sqlite")
            result = run(cfg)
            samples = [json.loads(line) for line in
                       (result.run_dir / "samples.jsonl").read_text().splitlines()]
            # a generation is identified by its model, sampling seed (a hash of the prompt and
            # the sample index), index and temperature
            unique.update((s["model"], s["seed"], s["sample_index"], s["temperature"])
                          for s in samples)
            by_order[order] = by_order.get(order, set()) | {
                (s["model"], s["seed"], s["sample_index"], s["temperature"]) for s in samples}
            cells.append({"cell": name, "generations": len(samples),
                          "requests_in_grid": stub.counts["requests"] - before,
                          "accuracy": result.metrics["accuracy"]})
        grid_s = time.perf_counter() - start
        grid_requests = stub.counts["requests"]

        # the most expensive cell, alone on a fresh cache
        heaviest = max(cells, key=lambda c: c["generations"])
        votes, tau1, tau2, order = grid[cells.index(heaviest)]
        before = stub.counts["requests"]
        _, cfg = cell_config(stub, workdir / "alone", args.problems, votes, tau1, tau2, order,
                             workdir / "alone.sqlite")
        cell_start = time.perf_counter()
        run(cfg)
        alone_s = time.perf_counter() - cell_start
        alone_requests = stub.counts["requests"] - before

    ratio = grid_requests / alone_requests
    unique_to = {order: len(keys - set().union(*(v for k, v in by_order.items() if k != order)))
                 for order, keys in by_order.items()}
    result = {
        "cpus": os.cpu_count(),
        "problems": args.problems,
        "cells": len(cells),
        "grid_requests": grid_requests,
        "grid_generations_recorded": sum(c["generations"] for c in cells),
        "grid_unique_generations": len(unique),
        # generations that only cells of this stage list ask for (no other stage list does)
        "unique_to_stage_list": unique_to,
        "most_expensive_cell": heaviest["cell"],
        "most_expensive_cell_requests_alone": alone_requests,
        "ratio": round(ratio, 3),
        "goal": "<= 1.3",
        "met": ratio <= 1.3,
        "ratio_without_s2s3": round((grid_requests - unique_to["s2s3"]) / alone_requests, 3),
        # no order of cells can do better than the heaviest cell plus what only S2+S3 and
        # S1+S3 ask for
        "ratio_lower_bound": round((alone_requests + unique_to["s2s3"] + unique_to["s1s3"])
                                   / alone_requests, 3),
        "grid_wall_time_s": round(grid_s, 1),
        "most_expensive_cell_wall_time_s": round(alone_s, 1),
        "per_cell": cells,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_cell"}, indent=2))


if __name__ == "__main__":
    main()
