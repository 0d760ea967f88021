"""Load run directories into tidy per-problem rows and summarise them.

A run directory holds `config.yaml` and `problems.jsonl`, and `metrics.json` once the run
ended. Runs still going or stopped by a kill have no `metrics.json`: they load as partial
runs (their finished problems only), never silently as complete ones.

    python -m cope.results.runs runs/           # one Markdown row per run found below runs/
"""

from __future__ import annotations

import argparse
import functools
import json
import warnings
from pathlib import Path
from typing import Any

import yaml

from cope.config import MethodConfig, current_aliases, pair_files, pair_label
from cope.records import read_complete_lines
from cope.results.method_defaults import default_settings, variant_label, variant_of

# the method schema's defaults (cope.config.MethodConfig), which are COPE's
DEFAULT_VOTES, DEFAULT_TAUS = MethodConfig.votes, (MethodConfig.tau1, MethodConfig.tau2)
SMALL_ONLY = ("small_single", "small_majority")
# tasks without a per-problem verdict: their answers are judged pairwise (python -m cope.judge)
PAIRWISE_JUDGED_TASKS = ("mt_bench",)
BASELINES = ("large",) + SMALL_ONLY


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (one holding config.yaml and problems.jsonl) at or below `root`,
    finished or not; fixed cell directories and Hydra multirun job directories alike."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist: pass a run directory or a directory of runs")
    return sorted(p.parent for p in root.rglob("problems.jsonl")
                  if (p.parent / "config.yaml").is_file())


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """config, metrics (None for a run that never ended), problems, and its cell."""
    run_dir = Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    # a killed run may end with a torn line: keep only whole records, as resume does
    # one record per problem: should a problem appear twice, its last record stands
    problems = list({p["id"]: p for p in read_complete_lines(run_dir / "problems.jsonl")}.values())
    problems.sort(key=lambda p: p["index"])
    cell = cell_of(config)
    return {
        "run_dir": str(run_dir),
        "config": config,
        "metrics": metrics,
        "problems": problems,
        "cell": cell,
        "label": cell_label(cell),
        "finished": bool(metrics and metrics.get("finished")),
        "n_selected": _n_selected(config, metrics),
    }


def _n_selected(config: dict[str, Any], metrics: dict[str, Any] | None) -> int | None:
    if metrics and "n_selected" in metrics:
        return metrics["n_selected"]
    task = config.get("task", {})
    return len(task["ids"]) if task.get("ids") else task.get("limit")


@functools.cache
def _pair_confs() -> tuple[dict[str, Any], ...]:
    """conf/pair/*.yaml: name and roles of every pair."""
    return tuple({"name": data.get("name", stem), "roles": data.get("roles") or {}}
                 for stem, data in pair_files().items())


@functools.cache
def _two_model_pairs() -> dict[tuple[str, str], str]:
    """(small, large) model -> the name of the conf/pair that has just those two roles."""
    out: dict[tuple[str, str], str] = {}
    for pair in _pair_confs():
        if set(pair["roles"]) == {"small", "large"}:
            out.setdefault((pair["roles"]["small"], pair["roles"]["large"]), pair["name"])
    return out


def comparison_pair(pair: dict[str, Any]) -> str:
    """The pair a run is compared within: its own, except that a pair with more roles than
    small and large (ABC's three tiers) joins the two-model pair of the same small and large
    models, so ABC is tested against, and plotted with, that pair's large model alone."""
    roles = current_aliases(pair.get("roles"))
    if set(roles) - {"small", "large"} and {"small", "large"} <= set(roles):
        return _two_model_pairs().get((roles["small"], roles["large"]), pair_label(pair))
    return pair_label(pair)


def pairs_joining(pair_name: str) -> list[str]:
    """The conf/pair pairs with more roles whose runs are compared within `pair_name`."""
    return [pair["name"] for pair in _pair_confs()
            if pair["name"] != pair_name and comparison_pair(pair) == pair_name]


def cell_of(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a run a cell of a table: task, pair, method, stages, votes, thresholds, seed,
    and any other change to the method's defaults (its variant)."""
    method = config["method"]
    task = config["task"]
    return {
        "task": task["name"],
        "pair": comparison_pair(config["pair"]),
        "run_pair": pair_label(config["pair"]),  # differs from pair for three-tier pairs
        "method": method["name"],
        "order": tuple(method["order"]),
        "votes": int(method.get("votes", DEFAULT_VOTES)),
        "tau1": float(method.get("tau1", DEFAULT_TAUS[0])),
        "tau2": float(method.get("tau2", DEFAULT_TAUS[1])),
        "threshold_op": method.get("threshold_op", "gt"),
        "seed": int(config.get("seed", 0)),
        "uses_votes": any(int(stage.get("votes", 1)) > 1 for stage in method["stages"].values()),
        "uses_taus": any(stage.get("threshold") is not None
                         for name, stage in method["stages"].items() if name in method["order"]),
        "variant": variant_of(config),
    }


def cell_label(cell: dict[str, Any]) -> str:
    """A short name: the method, then what differs from its defaults (seed excluded)."""
    parts = [cell["method"]]
    default = default_settings(cell["method"])
    if default["order"] is not None and cell["order"] != default["order"]:
        parts.append("stages=" + "+".join(cell["order"]))
    if cell["uses_votes"] and cell["votes"] != default["votes"]:
        parts.append(f"n={cell['votes']}")
    if cell["uses_taus"] and (cell["tau1"], cell["tau2"]) != default["taus"]:
        parts.append(f"tau={cell['tau1']:g}/{cell['tau2']:g}")
    if cell["uses_taus"] and cell["threshold_op"] != default["threshold_op"]:
        parts.append(cell["threshold_op"])
    if cell.get("variant"):
        parts.append(variant_label(cell["variant"]))
    return " ".join(parts)


def problem_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per problem, tagged with the run's cell; per-stage answer, consensus and
    acceptance as `<stage>_answer`, `<stage>_consensus`, `<stage>_accepted`."""
    cell = run["cell"]
    rows = []
    for p in run["problems"]:
        row = {
            "run_dir": run["run_dir"], "label": run["label"], "task": cell["task"],
            "method": cell["method"], "pair": cell["pair"], "seed": cell["seed"],
            "votes": cell["votes"], "tau1": cell["tau1"], "tau2": cell["tau2"],
            "problem_id": p["id"], "index": p["index"], "answer": p.get("answer"),
            "gold": p.get("gold"),
            "correct": None if p["correct"] is None else bool(p["correct"]),
            "resolved_stage": p["resolved_stage"], "cost_usd": p["cost_usd"],
            "failed_samples": p.get("failed_samples", 0),
        }
        for stage in p.get("stages", []):
            name = stage["stage"]
            row[f"{name}_answer"] = stage["answer"]
            row[f"{name}_consensus"] = stage["consensus"]
            row[f"{name}_accepted"] = stage["accepted"]
        rows.append(row)
    return rows


def tidy(runs: list[dict[str, Any]]):
    """All runs' problem rows as one pandas DataFrame (one row per run and problem)."""
    import pandas as pd

    return pd.DataFrame([row for run in runs for row in problem_rows(run)])


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, cost per 1M problems and resolved counts, computed from the problem records
    (so a partial run is summarised over what it finished)."""
    problems = run["problems"]
    n = len(problems)
    resolved: dict[str, int] = {name: 0 for name in run["cell"]["order"]}
    for p in problems:
        resolved[p["resolved_stage"]] = resolved.get(p["resolved_stage"], 0) + 1
    return {
        "label": run["label"], "run_dir": run["run_dir"], **{k: run["cell"][k] for k in
                                                             ("task", "method", "pair", "seed")},
        "n": n, "n_selected": run["n_selected"], "finished": run["finished"],
        # an open-ended task's problems say null: not judged by correctness, no accuracy
        **({"n_correct": None, "accuracy": float("nan")}
           if any(p["correct"] is None for p in problems) else
           {"n_correct": sum(bool(p["correct"]) for p in problems),
            "accuracy": sum(bool(p["correct"]) for p in problems) / n if n else float("nan")}),
        "cost_usd_per_million": sum(p["cost_usd"] for p in problems) / n * 1e6 if n else float("nan"),
        "resolved_by_stage": resolved,
        # samples whose request failed for good abstained; resume=true solves those problems again
        "failed_samples": _count(problems, "failed_samples"),
        "truncated_samples": _count(problems, "truncated_samples"),
    }


def _count(problems: list[dict[str, Any]], key: str) -> int | None:
    """A per-problem count summed; None when the records predate the field (unknown, not 0)."""
    if not any(key in p for p in problems):
        return None
    return sum(p.get(key, 0) for p in problems)


def summary_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| task | method | pair | n | accuracy | USD per 1M problems | resolved by stage "
        "| failed / truncated samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        s = run_summary(run)
        stages = ", ".join(f"{k}:{v}" for k, v in s["resolved_by_stage"].items())
        n = str(s["n"]) if run["finished"] else f"{s['n']} of {s['n_selected']} (unfinished)"
        lines.append(
            f"| {s['task']} | {s['label']} | {s['pair']} | {n} | "
            f"{s['accuracy']:.1%} | {s['cost_usd_per_million']:,.1f} | {stages} | "
            f"{_or_dash(s['failed_samples'])} / {_or_dash(s['truncated_samples'])} |"
        )
    return "\n".join(lines)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def load_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every run below `root` that finished at least one problem and whose problems have a
    verdict (runs of pairwise-judged tasks are left out, with a warning)."""
    runs = [load_run(path) for path in find_runs(root)]
    judged_pairwise = [r for r in runs if r["cell"]["task"] in PAIRWISE_JUDGED_TASKS]
    for run in judged_pairwise:
        warnings.warn(f"{run['run_dir']}: task {run['cell']['task']} has no per-problem "
                      "verdict; its pairwise judgement is in `python -m cope.judge` output",
                      stacklevel=2)
    return [run for run in runs if run["problems"] and run not in judged_pairwise]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a run directory or a directory of runs")
    args = parser.parse_args(argv)
    runs = load_runs(args.root)
    if not runs:
        raise SystemExit(f"no run directories (config.yaml and problems.jsonl) under {args.root}")
    print(summary_table(runs))


if __name__ == "__main__":
    main()
