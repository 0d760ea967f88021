"""Load run directories into tidy per-problem rows and summarise them.

    python -m analysis.runs runs/           # one Markdown row per run found below runs/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (one holding metrics.json) at or below `root`."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("metrics.json"))


def load_run(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    with open(run_dir / "problems.jsonl", encoding="utf-8") as handle:
        problems = [json.loads(line) for line in handle if line.strip()]
    return {
        "run_dir": str(run_dir),
        "config": yaml.safe_load((run_dir / "config.yaml").read_text()),
        "metrics": json.loads((run_dir / "metrics.json").read_text()),
        "problems": problems,
    }


def problem_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per problem, tagged with the run's task, method, pair and seed."""
    metrics = run["metrics"]
    return [
        {
            "run_dir": run["run_dir"],
            "task": metrics["task"],
            "method": metrics["method"],
            "pair": metrics["pair"],
            "seed": metrics["seed"],
            "problem_id": p["id"],
            "correct": bool(p["correct"]),
            "resolved_stage": p["resolved_stage"],
            "cost_usd": p["cost_usd"],
        }
        for p in run["problems"]
    ]


def summary_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| task | method | pair | n | accuracy | USD per 1M problems | resolved by stage |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        m = run["metrics"]
        stages = ", ".join(f"{k}:{v}" for k, v in m["resolved_by_stage"].items())
        lines.append(
            f"| {m['task']} | {m['method']} | {m['pair']} | {m['n_problems']} | "
            f"{m['accuracy']:.1%} | {m['cost_usd_per_million']:,.1f} | {stages} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a run directory or a directory of runs")
    args = parser.parse_args(argv)
    runs = [load_run(path) for path in find_runs(args.root)]
    if not runs:
        raise SystemExit(f"no run directories (with metrics.json) under {args.root}")
    print(summary_table(runs))


if __name__ == "__main__":
    main()
