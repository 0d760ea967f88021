"""cope calibrate: tune cascades on dev pools to a target, with a finite-sample guarantee.

    cope calibrate POOL [POOL ...] --target "accuracy>=large-0.02" --reference LARGE_RUN \
        --test task.offset=0 task.limit=100 --out calibration/

Each POOL is a finished run of one method with experiment=pool on the dev problems. Every
configuration of the search (--search thresholds,votes,order,threshold_op) is evaluated
from the pool's generations alone; configurations whose generations the pool lacks are
counted and left out, or made once with --generate. The chosen configuration of each method
is written as an experiment file (OUT/experiment/calibrated_<method>.yaml) that runs once on
the test problems as an ordinary cope run; OUT/calibration.json holds the search and the
statement. See docs/calibration.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf

from cope.calibration.experiment import experiment
from cope.calibration.pools import Pool, Structure, StageTable, generate, survey
from cope.calibration.risk import (
    betting_upper_bound,
    certification_order,
    clopper_pearson,
    fewest_problems,
    fixed_sequence,
    split,
)
from cope.calibration.search import OPS, Configuration, configurations, evaluate
from cope.calibration.targets import Target, parse_target, risk_of
from cope.config import TaskConfig, validate
from cope.errors import ConfigError, CopeError
from cope.records import CONFIG, PROBLEMS, read_complete_lines
from cope.tasks import create_task
from cope.tasks.base import select

DIMENSIONS = ("thresholds", "votes", "order", "threshold_op")
CLOSEST = 5  # configurations shown when none is certified


def subsequences(order: Sequence[str]) -> list[tuple[str, ...]]:
    """Every stage order that keeps the pool's order (the last stage always answers)."""
    return [combo for k in range(len(order), 0, -1)
            for combo in itertools.combinations(order, k)]


def structures(pool: Pool, search: set[str], votes: list[int] | None,
               orders: list[tuple[str, ...]] | None) -> list[Structure]:
    vote_counts = votes or (list(range(1, pool.votes + 1)) if "votes" in search else [pool.votes])
    too_many = [n for n in vote_counts if n > pool.votes]
    if too_many:
        raise ConfigError(f"{pool.run_dir}: the pool ran {pool.votes} votes, so it cannot give "
                          f"{too_many}; make the pool at the largest votes of the search.")
    if not pool.voting_stages():
        vote_counts = [pool.votes]
    stage_orders = orders or (subsequences(pool.order) if "order" in search else [pool.order])
    voting = bool(pool.voting_stages())
    return [Structure(n, tuple(order), voting) for n in vote_counts for order in stage_orders]


def test_ids(pool: Pool, selection: dict[str, Any]) -> list[str]:
    """The ids the test run will take: the pool's task with the test selection."""
    task_cfg = OmegaConf.merge(OmegaConf.structured(TaskConfig), pool.config["task"], selection)
    problems = select(create_task(task_cfg).load(), task_cfg.ids, task_cfg.offset, task_cfg.limit)
    return [p.id for p in problems]


def selection_of(overrides: list[str]) -> dict[str, Any]:
    """The test problems' task settings: a selection replaces the pool's whole (its offset
    and limit do not carry over), its split only when named."""
    out: dict[str, Any] = {"ids": None, "offset": 0, "limit": None}
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.removeprefix("task.")
        if key not in (*out, "split"):
            raise ConfigError(f"--test {item}: choose test problems with task.split, "
                              "task.ids, task.offset and task.limit.")
        out[key] = yaml.safe_load(value)
    return out


def reference_of(run_dir: Path, ids: list[str]) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Large alone on the dev problems: per-problem correctness (in `ids` order), mean cost
    per problem, and a summary."""
    rows = {row["id"]: row for row in read_complete_lines(run_dir / PROBLEMS)}
    absent = [i for i in ids if i not in rows]
    if absent:
        raise ConfigError(f"--reference {run_dir}: it lacks {len(absent)} of the pools' dev "
                          f"problems (e.g. {absent[:3]}); run it on the same task.ids.")
    method = yaml.safe_load((run_dir / CONFIG).read_text())["method"]["name"]
    correct = np.array([bool(rows[i]["correct"]) for i in ids])
    cost = float(np.mean([rows[i]["cost_usd"] for i in ids]))
    return correct, cost, {"run": str(run_dir), "method": method,
                           "accuracy": float(correct.mean()), "usd_per_1m": cost * 1e6}


def summarise(correct: np.ndarray, cost: np.ndarray, delta: float) -> dict[str, Any]:
    n, k = len(correct), int(correct.sum())
    low, high = clopper_pearson(k, n, delta)
    return {"accuracy": k / n, "correct": k, "problems": n, "accuracy_interval": [low, high],
            "usd_per_1m": float(cost.mean()) * 1e6}


def calibrate_pool(pool: Pool, args, target: Target, reference) -> dict[str, Any]:
    started = time.perf_counter()
    search = set(args.search)
    tables: list[StageTable] = []
    left_out, generated = [], []
    for structure in structures(pool, search, args.votes, args.orders):
        try:  # fewer votes may be no valid configuration of the method (MoT's mixed style)
            validate(pool.structure_config(structure))
        except ConfigError as error:
            left_out.append({"structure": structure.label, "invalid": str(error)})
            continue
        table = survey(pool, structure, args.scratch)
        if not table.covered and args.generate:
            metrics = generate(pool, structure, args.scratch)
            generated.append({"structure": structure.label, "backend_calls":
                              metrics["backend_calls"], "spent_usd": metrics["spent_usd"]})
            table = survey(pool, structure, args.scratch)
        if table.ids != pool.ids:  # the pool's records and its config disagree
            raise ConfigError(f"{pool.run_dir}: its config selects other problems than its "
                              "records hold; was it changed after the run?")
        if table.covered:
            tables.append(table)
        else:
            left_out.append({"structure": structure.label, "missing_generations": table.missing})
    if not tables:
        raise ConfigError(f"{pool.run_dir}: the pool covers no structure of the search: "
                          + "; ".join(f"{x['structure']} {why_left_out(x)}" for x in left_out)
                          + ". Add --generate to make what is missing.")
    surveyed = time.perf_counter()
    ops = OPS if "threshold_op" in search else (pool.config["method"]["threshold_op"],)
    evaluations = []
    for table in tables:
        fixed = None
        if "thresholds" not in search:
            fixed = {name: pool.config["method"]["stages"][name]["threshold"]
                     for name in table.stages}
        evaluations.append(evaluate(table, configurations(table, ops, fixed)))
    configs: list[Configuration] = [c for e in evaluations for c in e.configurations]
    correct = np.concatenate([e.correct for e in evaluations])
    cost = np.concatenate([e.cost for e in evaluations])
    ref_correct, ref_cost = (reference[0], reference[1]) if reference else (None, None)
    risk = risk_of(target, correct, cost, ref_correct, ref_cost)
    searched, tested = split(pool.ids, args.split)
    front = certification_order(risk.losses[:, searched],
                                risk.objective[:, searched].mean(axis=1), risk.alpha, args.delta)
    valid, pvalues = fixed_sequence(front, risk.losses[:, tested], risk.alpha, args.delta)
    finished = time.perf_counter()
    result: dict[str, Any] = {
        "pool": str(pool.run_dir), "method": pool.method, "dev_problems": len(pool.ids),
        "search_part": len(searched), "testing_part": len(tested),
        "structures": [t.structure.label for t in tables], "left_out": left_out,
        "generated": generated, "configurations": len(configs),
        "pareto_front": len(front), "tested": len(pvalues), "certified": len(valid),
        "survey_s": round(surveyed - started, 2), "search_s": round(finished - surveyed, 3),
        "statement": risk.statement, "alpha": risk.alpha,
        **({"cost_bound_usd_per_problem": risk.cost_bound} if risk.cost_bound else {}),
    }
    if not valid:
        mean_loss = risk.losses.mean(axis=1)
        closest = np.argsort(mean_loss, kind="stable")[:CLOSEST]
        result["chosen"] = None
        # could any configuration be certified on this many problems? at the lowest mean
        # loss seen, with no variance, the least the testing part needs
        result["lowest_mean_loss"] = float(mean_loss[closest[0]])
        result["testing_problems_needed"] = fewest_problems(
            float(mean_loss[closest[0]]), risk.alpha, args.delta)
        result["closest"] = [{"configuration": configs[i].label,
                              "mean_loss": float(mean_loss[i]),
                              "p_value": pvalues.get(int(i)),
                              **summarise(correct[i], cost[i], args.delta)} for i in closest]
        return result
    best = min(valid, key=lambda i: (float(risk.objective[i].mean()), i))
    chosen = configs[best]
    bound = betting_upper_bound(risk.losses[best, tested], args.delta)
    result["chosen"] = {
        "configuration": chosen.label, "structure": chosen.structure.label,
        "thresholds": dict(zip(chosen.structure.order, chosen.thresholds)),
        "threshold_op": chosen.threshold_op, "p_value": pvalues[best],
        "dev": summarise(correct[best], cost[best], args.delta),
        "testing_part_loss_bound": bound,
    }
    result["_configuration"] = chosen
    return result


def run_calibration(args) -> dict[str, Any]:
    target = parse_target(args.target)
    pools = [Pool.load(p, args.cache) for p in args.pools]
    ids = pools[0].ids
    for pool in pools[1:]:
        if sorted(pool.ids) != sorted(ids):
            raise ConfigError(f"{pool.run_dir} and {pools[0].run_dir} hold different dev "
                              "problems: every method is calibrated on the same ones.")
    selection = selection_of(args.test)
    test = test_ids(pools[0], selection)
    overlap = sorted(set(test) & set(ids), key=str)
    if overlap:
        raise ConfigError(f"the test problems ({len(test)}) and the pools' dev problems share "
                          f"{len(overlap)} ids (e.g. {overlap[:5]}): calibrate on problems the "
                          "test run never sees.")
    reference = None
    if target.needs_reference:
        if args.reference is None:
            raise ConfigError(f"--target {target.text}: name large alone's run on the dev "
                              "problems (--reference RUN_DIR).")
        reference = reference_of(Path(args.reference), ids)
    out = Path(args.out)
    report: dict[str, Any] = {"target": target.text, "delta": args.delta, "split": args.split,
                              "search": sorted(args.search), "test": selection,
                              "test_problems": len(test),
                              **({"reference": reference[2]} if reference else {}),
                              "methods": []}
    for pool in pools:
        # large alone's correctness in this pool's problem order
        ordered = reference_of(Path(args.reference), pool.ids) if reference else None
        result = calibrate_pool(pool, args, target, ordered)
        chosen = result.pop("_configuration", None)
        if chosen is not None:
            name = f"calibrated_{pool.method}"
            header = (f"cope calibrate: {pool.method}, {result['statement']} with probability "
                      f">= {1 - args.delta:g}\n(target {target.text}, {len(ids)} dev problems "
                      f"from {pool.run_dir})\nchosen: {result['chosen']['configuration']}")
            path = out / "experiment" / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(experiment(pool, chosen, selection, header))
            result["experiment"] = str(path)
            result["command"] = (f"cope hydra.searchpath=[file://{out.resolve()}] "
                                 f"experiment={name}")
        report["methods"].append(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def why_left_out(entry: dict[str, Any]) -> str:
    if "invalid" in entry:
        return f"not a valid configuration ({entry['invalid'].rstrip('.')})"
    return f"needs {entry['missing_generations']}"


def describe(report: dict[str, Any]) -> str:
    lines = [f"target {report['target']}, delta {report['delta']:g}"
             + (f"; large alone on dev: {report['reference']['accuracy']:.1%}, "
                f"${report['reference']['usd_per_1m']:,.2f}/1M" if "reference" in report else "")]
    for m in report["methods"]:
        lines.append(f"{m['method']}: {m['configurations']} configurations of "
                     f"{len(m['structures'])} structures in {m['search_s'] * 1000:.0f} ms "
                     f"(surveys {m['survey_s']:.1f} s)")
        for x in m["left_out"]:
            lines.append(f"  left out {x['structure']}: {why_left_out(x)}")
        if m["chosen"] is None:
            lines.append(f"  no configuration is certified for {m['statement']}; closest:")
            needed = m["testing_problems_needed"]
            if needed is None:
                lines.append(f"  (no configuration's mean loss on dev, at best "
                             f"{m['lowest_mean_loss']:.3f}, is far enough under the level "
                             f"{m['alpha']:.3f} to be certified on any feasible number of dev "
                             "problems: the target is out of reach)")
            elif needed > m["testing_part"]:
                lines.append(f"  (the testing part has {m['testing_part']} problems; at the "
                             f"lowest mean loss, {m['lowest_mean_loss']:.3f} against the level "
                             f"{m['alpha']:.3f}, certifying needs at least {needed}: more dev "
                             "problems, or a looser target)")
            for c in m["closest"]:
                lines.append(f"    {c['configuration']}: {c['accuracy']:.1%}, "
                             f"${c['usd_per_1m']:,.2f}/1M")
            continue
        c, dev = m["chosen"], m["chosen"]["dev"]
        lines.append(f"  chosen {c['configuration']}: dev {dev['accuracy']:.1%}, "
                     f"${dev['usd_per_1m']:,.2f}/1M; certified {m['statement']} (p = "
                     f"{c['p_value']:.3g})")
        lines.append(f"  test it once: {m['command']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cope calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pools", nargs="+", help="pool runs (experiment=pool), one per method")
    parser.add_argument("--target", required=True,
                        help='e.g. "accuracy>=large-0.02", "accuracy>=0.6", "cost<=0.6*large"')
    parser.add_argument("--delta", type=float, default=0.1, help="the guarantee fails w.p. delta")
    parser.add_argument("--search", type=lambda s: s.split(","), default=["thresholds"],
                        help=f"what to search, of {','.join(DIMENSIONS)} (default thresholds)")
    parser.add_argument("--votes", type=lambda s: [int(v) for v in s.split(",")],
                        help="vote counts to search (default: 1 to the pool's)")
    parser.add_argument("--orders", nargs="+", type=lambda s: tuple(s.split(",")),
                        help="stage orders to search (default: every one keeping the pool's)")
    parser.add_argument("--reference", help="large alone's run on the dev problems")
    parser.add_argument("--test", nargs="+", default=[], metavar="task.KEY=VALUE",
                        help="the test problems (task.ids, task.offset, task.limit)")
    parser.add_argument("--split", type=float, default=0.5,
                        help="share of the dev problems that orders the search")
    parser.add_argument("--generate", action="store_true",
                        help="make the generations a structure lacks (through the models)")
    parser.add_argument("--cache", help="the pools' generation cache, if not where they ran")
    parser.add_argument("--scratch", help="where the surveys' temporary runs go")
    parser.add_argument("--out", default="calibration", help="where results are written")
    args = parser.parse_args(argv)
    unknown = set(args.search) - set(DIMENSIONS)
    if unknown:
        parser.error(f"--search {','.join(sorted(unknown))}: choose from {','.join(DIMENSIONS)}")
    if not args.test:
        parser.error("--test: name the test problems, which must not be dev problems")
    try:
        report = run_calibration(args)
    except CopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(report))
    return 0 if all(m["chosen"] for m in report["methods"]) else 1


if __name__ == "__main__":
    sys.exit(main())
