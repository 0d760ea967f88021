"""Everything a reviewer asks of a sweep, from its run directories, in one command.

    python -m analysis.report RUNS_DIR --out OUT_DIR [--resamples 10000] [--common-problems] [--wandb]

RUNS_DIR may hold single runs, Hydra multiruns or fixed cell directories
(experiments/results/gsm8k-cpu/<cell>/); unfinished runs count with the problems they
finished, and every number says how many problems it rests on. OUT_DIR receives:

- report.md: an index of everything below, with the runs found;
- tables/tableN[-task-pair].md and .tex: the paper's Tables 3, 5, 8, 9, 11, 13, ours beside;
- significance.md and .json: paired tests of every method against each baseline, Holm-adjusted,
  and mean ± sd across seeds;
- stages.md and .json: per-stage diagnostics, calibration, error propagation, and the effect
  of the stage-1 plan on stage 2 (when an S2+S3 run is present);
- pareto.md and .json: the frontier points and the cost of closing 50/80/100% of the
  small-to-large accuracy gap;
- signal.md and .json: how good each stage's escalation signal is (AUROC, ECE, risk-coverage)
  and the cascade oracle on the same generations, for every run of a math task;
- figures/: pareto-*, stages-*, calibration-*, propagation-*, signal-* as PNG and PDF.

A README.md in RUNS_DIR with the markers of analysis/results_readme.py gets its table of
results rewritten between them (the reading around it is left as written).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from analysis import plots, results_readme, signal, significance, stages, tables
from cope.results.pareto import GapCost, Point, gap_closing_costs, pareto_frontier
from cope.results.runs import SMALL_ONLY, load_runs, summary_table
from cope.sandbox.isolation import FORMER_LAYERS


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def restrict_to_common(runs: list[dict]) -> list[dict]:
    """The same runs, each cut to the problems every run of its task finished."""
    common: dict[str, set] = {}
    for run in runs:
        ids = {p["id"] for p in run["problems"]}
        task = run["cell"]["task"]
        common[task] = ids if task not in common else common[task] & ids
    return [{**run, "problems": [p for p in run["problems"] if p["id"] in common[run["cell"]["task"]]]}
            for run in runs]


def isolations(run: dict) -> frozenset[str]:
    """The sandbox isolations a run's model-written programs (its candidates and its judge's
    runs) ran under; none: no programs. Older records' names are read as today's."""
    metrics = run.get("metrics") or {}
    found = set(metrics.get("sandbox_isolation") or ())
    if not found:  # an unfinished run has no metrics.json yet
        found = {layers for problem in run["problems"] for stage in problem.get("stages", [])
                 for layers in stage.get("sandbox") or [] if layers}
    if judge := (metrics.get("task_details") or {}).get("sandbox"):
        found.add(judge)
    return frozenset(FORMER_LAYERS.get(layers, layers) for layers in found)


def isolation_warning(name: str, group: list[dict]) -> str | None:
    """A warning when the cells of one table ran their programs under different isolation
    (an unprotected or differently limited sandbox can change which programs pass)."""
    seen = {isolations(run) for run in group} - {frozenset()}
    if len(seen) < 2:
        return None
    cells = "; ".join(f"{run['label']}: {', '.join(sorted(isolations(run))) or 'no programs'}"
                      for run in group)
    return f"**Warning ({name}):** its cells ran model-written programs under different sandbox isolation ({cells})."


def settings(runs: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        out[(run["cell"]["task"], run["cell"]["pair"])].append(run)
    return dict(sorted(out.items()))


def _one_per_label(runs: list[dict]) -> list[dict]:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_label[run["label"]].append(run)
    return [tables.pick(group) for group in by_label.values()]


def pareto_section(group: list[dict], resamples: int) -> dict[str, Any]:
    points = [plots.run_point(run, resamples=resamples) for run in _one_per_label(group)]
    # the frontier and the gap are read off the runs on the full problem set only
    plain = [Point(p["label"], p["cost"].estimate, p["accuracy"].estimate)
             for p in plots.on_full_problem_set(points)]
    out: dict[str, Any] = {
        "points": [{"label": p["label"], "n": p["n"], "accuracy": asdict(p["accuracy"]),
                    "cost_usd_per_million": asdict(p["cost"])} for p in points],
        "frontier": [asdict(f) for f in pareto_frontier(plain)],
    }
    small = [q for q in plain if q.label in SMALL_ONLY]
    large = [q for q in plain if q.label == "large"]
    if not small or not large:
        out["gap"] = ("needs a small-only run (small_single or small_majority) and a large run, "
                      "both on the full problem set")
    else:
        best_small = max(small, key=lambda q: q.accuracy)
        try:
            out["gap"] = {"small": asdict(best_small), "large": asdict(large[0]),
                          "costs": [asdict(g) for g in gap_closing_costs(plain, best_small, large[0])]}
        except ValueError as exc:
            out["gap"] = str(exc)
    out["_points"] = points
    return out


def gap_closing_costs_of(gap: dict | str) -> list[GapCost]:
    return [] if isinstance(gap, str) else [GapCost(**g) for g in gap["costs"]]


def pareto_markdown(name: str, section: dict[str, Any]) -> str:
    lines = [f"## {name}", "", "One run per cell (its lowest seed), each on the problems it finished.",
             "", "| method | n | accuracy % [95% bootstrap] | cost (USD / 1M) "
             "[95% bootstrap] | on frontier |", "|---|---|---|---|---|"]
    front = {f["label"] for f in section["frontier"]}
    for p in section["points"]:
        a, c = p["accuracy"], p["cost_usd_per_million"]
        lines.append(f"| {p['label']} | {p['n']} | {100 * a['estimate']:.1f} [{100 * a['low']:.1f}, "
                     f"{100 * a['high']:.1f}] | {c['estimate']:,.1f} [{c['low']:,.1f}, "
                     f"{c['high']:,.1f}] | {'yes' if p['label'] in front else ''} |")
    ns = {p["n"] for p in section["points"]}
    if len(ns) > 1:
        lines += ["", f"Points rest on different numbers of problems ({sorted(ns)}). The frontier "
                  f"and the gap are read off the runs on {max(ns)} problems only; rerun with "
                  "--common-problems to compare every run on the problems all of them finished."]
    gap = section["gap"]
    lines += ["", "### Cost of closing the small-to-large gap", ""]
    if isinstance(gap, str):
        lines.append(f"Not computed: {gap}.")
    else:
        lines += [
            f"Gap: from {gap['small']['label']} ({100 * gap['small']['accuracy']:.1f}%, free) to "
            f"large ({100 * gap['large']['accuracy']:.1f}%, {gap['large']['cost']:,.1f} USD / 1M). "
            "Cost to reach small + f x gap, read off the piecewise-linear Pareto frontier "
            "(mixing two frontier methods at random per problem reaches any point between them).",
            "", "| gap closed | target accuracy % | cost (USD / 1M) | share of large's cost |",
            "|---|---|---|---|"]
        for g in gap["costs"]:
            cost = "not reached" if g["cost"] is None else f"{g['cost']:,.1f}"
            share = "-" if g["share_of_large_cost"] is None else f"{100 * g['share_of_large_cost']:.0f}%"
            lines.append(f"| {100 * g['fraction']:.0f}% | {100 * g['target_accuracy']:.1f} | {cost} "
                         f"| {share} |")
    return "\n".join(lines) + "\n"


def stages_section(group: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    group = [run for run in group if all("stages" in p for p in run["problems"])]
    if not group:
        return out
    for run in group:
        if len(run["cell"]["order"]) < 2 or run["cell"]["task"] not in stages.MATH_TASKS:
            continue
        key = f"{run['label']} seed {run['cell']['seed']}"
        out[key] = {"run_dir": run["run_dir"], "n": len(run["problems"]),
                    "stages": stages.stage_table(run), "calibration": stages.calibration(run),
                    "propagation": stages.propagation(run), "_run": run}
    cope = tables.pick(tables.matching(group, *_setting(group), "cope"))
    s2s3 = tables.pick(tables.matching(group, *_setting(group), "cope_s2s3"))
    if cope is not None and s2s3 is not None:
        out["carried_plan_effect"] = stages.carried_plan_effect(cope, s2s3)
    return out


def _setting(group: list[dict]) -> tuple[str, str]:
    return group[0]["cell"]["task"], group[0]["cell"]["pair"]


def stages_markdown(name: str, section: dict[str, Any]) -> str:
    lines = [f"## {name}", ""]
    for key, d in section.items():
        if key == "carried_plan_effect":
            continue
        lines += [f"### {key} (n={d['n']})", "",
                  "| stage | reached | resolved | accuracy of resolved | accuracy of stage answer "
                  "(all reached) | mean consensus |", "|---|---|---|---|---|---|"]
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
        for row in d["stages"]:
            consensus = "-" if row["mean_consensus"] is None else f"{row['mean_consensus']:.2f}"
            lines.append(f"| {row['stage']} | {row['reached']} | {row['resolved']} | "
                         f"{pct(row['resolved_accuracy'])} | {pct(row['stage_accuracy'])} | "
                         f"{consensus} |")
        lines += ["", "| transition | escalated | wrong -> right | wrong -> same wrong | "
                  "wrong -> other wrong | right -> wrong | right -> right |",
                  "|---|---|---|---|---|---|---|"]
        for name_, f in d["propagation"].items():
            lines.append(f"| {name_} | {f['escalated']} | {f['wrong_then_right']} | "
                         f"{f['wrong_then_same_wrong']} | {f['wrong_then_other_wrong']} | "
                         f"{f['right_then_wrong']} | {f['right_then_right']} |")
        lines.append("")
    effect = section.get("carried_plan_effect")
    if effect:
        lines += ["### Does the stage-1 plan help stage 2?", ""]
        if effect["n"]:
            lines.append(
                f"On the {effect['n']} problems COPE escalated from stage 1 (and the S2+S3 run "
                f"finished), stage 2's majority answer was right "
                f"{100 * effect['s2_accuracy_with_s1_plan']:.1f}% of the time with the stage-1 plan "
                f"and {100 * effect['s2_accuracy_without_s1_plan']:.1f}% "
                f"without it (S2+S3, same large-model guideline); only with: "
                f"{effect['only_with_plan_right']}, only without: {effect['only_without_plan_right']}, "
                f"McNemar exact p = {effect['p_value']:.3g}.")
        else:
            lines.append("No problem both escalated from stage 1 in COPE and finished in S2+S3.")
        lines.append("")
    return "\n".join(lines)


LIMITS = """## What the records cannot tell

- Per-stage correctness is the stage's majority answer judged against the gold answer (math
  tasks only); a wrong stage-2 answer that equals stage 1's wrong answer is counted as a
  carried error, but one run cannot show that the carried plan *caused* it. The S2+S3
  comparison above estimates that effect on average, over problems, not per problem.
- Plan texts are in samples.jsonl; nothing here judges a plan's quality.
- Stages a problem never reached have no answer: "recovered" counts only escalated problems.
"""


def _dump(obj: Any, path: Path) -> None:
    def clean(x):
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items() if not str(k).startswith("_")}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if hasattr(x, "__dataclass_fields__"):
            return clean(asdict(x))
        if hasattr(x, "item"):
            return x.item()
        return x

    path.write_text(json.dumps(clean(obj), indent=2) + "\n")


def build_report(runs_dir: str | Path, out_dir: str | Path, *, resamples: int = 10_000,
                 seed: int = 0, common_problems: bool = False, wandb: bool = False
                 ) -> dict[str, Any]:
    """Write the report; returns what it wrote (paths and the computed sections). With
    `wandb`, the runs are the offline W&B runs under `runs_dir` instead of run directories."""
    if wandb:
        from analysis.wandb_offline import find_offline_runs, load_offline_run

        runs = [load_offline_run(path) for path in find_offline_runs(runs_dir)]
    else:
        runs = load_runs(runs_dir)
    if not runs:
        what = "offline W&B run (offline-run-*)" if wandb else \
            "run with a finished problem (config.yaml and problems.jsonl)"
        raise SystemExit(f"no {what} under {runs_dir}")
    if common_problems:
        runs = restrict_to_common(runs)
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    groups = settings(runs)
    several = len(groups) > 1
    written: dict[str, Any] = {"tables": [], "figures": [], "runs": len(runs)}
    index = ["# Analysis report", "", f"Runs under `{runs_dir}`"
             + (", each restricted to the problems all runs of its task finished" if common_problems else "")
             + ":", "", summary_table(runs), "",
             "A failed sample (a request that failed for good) abstained from its vote; "
             "`resume=true` solves its problem again. Truncated samples hit their token limit.", ""]

    table_md = []
    written["warnings"] = []
    for (task, pair), group in groups.items():
        if warning := isolation_warning(f"{task} / {pair}", group):
            print(warning.replace("**", ""), file=sys.stderr)
            written["warnings"].append(warning)
            table_md += [warning, ""]
        suffix = f"-{slug(task)}-{slug(pair)}" if several else ""
        for table in tables.all_tables(group, task, pair):
            md, tex = (out / "tables" / f"{table.name}{suffix}.{ext}" for ext in ("md", "tex"))
            md.write_text(table.markdown())
            tex.write_text(table.latex())
            written["tables"] += [md, tex]
            table_md.append(table.markdown())
    index += ["## Tables", "", *table_md]

    rows = significance.comparisons(runs, resamples=resamples, seed=seed)
    seeds = significance.seed_summary(runs)
    (out / "significance.md").write_text(significance.markdown(rows, seeds))
    _dump({"comparisons": rows, "seeds": seeds}, out / "significance.json")
    index += ["## Significance", "", "See [significance.md](significance.md) "
              f"({len(rows)} paired comparisons).", ""]

    pareto_all, stages_all, pareto_md, stages_md = {}, {}, [], []
    signal_all, signal_md = {}, []
    for (task, pair), group in groups.items():
        name = f"{task} / {pair}"
        suffix = f"-{slug(task)}-{slug(pair)}" if several else ""
        section = pareto_section(group, resamples=min(resamples, 2000))
        gap = section["gap"]
        gap_costs = gap_closing_costs_of(gap)
        written["figures"] += plots.pareto_plot(section["_points"], out / "figures" / f"pareto{suffix}",
                                                title=name, gap_costs=gap_costs)
        pareto_all[name] = section
        pareto_md.append(pareto_markdown(name, section))
        sig = signal.signal_section(group)
        signal_all[name] = sig
        if sig:
            signal_md.append(signal.signal_markdown(name, sig))
        # figures for one run per cell (its lowest seed); the Markdown covers every run
        drawn = {id(run) for run in _one_per_label(group)}
        for key, d in sig.items():
            if id(d["_run"]) in drawn:
                written["figures"] += plots.signal_plot(
                    d["stages"], out / "figures" / f"signal-{slug(key)}{suffix}", key)
        st = stages_section(group)
        stages_all[name] = st
        stages_md.append(stages_markdown(name, st))
        for key, d in st.items():
            if key == "carried_plan_effect" or id(d["_run"]) not in drawn:
                continue
            stem = slug(key) + suffix
            written["figures"] += plots.stage_plot(d["stages"], out / "figures" / f"stages-{stem}", key)
            written["figures"] += plots.calibration_plot(d["calibration"],
                                                         out / "figures" / f"calibration-{stem}", key)
            written["figures"] += plots.propagation_plot(d["propagation"],
                                                         out / "figures" / f"propagation-{stem}", key)
    (out / "pareto.md").write_text("# Accuracy against cost\n\n" + "\n".join(pareto_md))
    _dump(pareto_all, out / "pareto.json")
    (out / "stages.md").write_text("# Per-stage diagnostics\n\n" + "\n".join(stages_md) + "\n" + LIMITS)
    _dump(stages_all, out / "stages.json")
    (out / "signal.md").write_text("# The escalation signal\n\n" + ("\n".join(signal_md) or (
        "No run of a math task: a stage's answer is judged only where it can be compared with "
        "the gold answer (code tasks record no per-stage verdict).\n")) + "\n" + signal.LIMITS)
    _dump(signal_all, out / "signal.json")
    index += ["## Accuracy against cost", "", *pareto_md,
              "## Stages", "", "See [stages.md](stages.md).", "",
              "## The escalation signal", "", "See [signal.md](signal.md).", "", "## Figures", ""]
    index += [f"- [{p.name}](figures/{p.name})" for p in written["figures"] if p.suffix == ".png"]
    (out / "report.md").write_text("\n".join(index) + "\n")
    written.update(significance=rows, seeds=seeds, pareto=pareto_all, stages=stages_all)
    readme = Path(runs_dir) / "README.md"
    figure = None if several else results_readme.figure_link(readme.parent,
                                                               out / "figures" / "pareto.png")
    if not wandb and results_readme.refresh(readme, results_readme.headline(runs, rows, figure)):
        written["readme"] = readme
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", help="a run directory or a directory of runs")
    parser.add_argument("--out", required=True, help="where the report goes (created)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--common-problems", action="store_true",
                        help="compare every run on the problems all runs of its task finished")
    parser.add_argument("--wandb", action="store_true",
                        help="read the offline W&B runs (tracker=wandb) under RUNS_DIR instead of "
                             "run directories; per-stage diagnostics need run directories")
    args = parser.parse_args(argv)
    if not Path(args.runs_dir).exists():
        raise SystemExit(f"{args.runs_dir} does not exist: pass a run directory or a directory of runs")
    written = build_report(args.runs_dir, args.out, resamples=args.resamples, seed=args.seed,
                           common_problems=args.common_problems, wandb=args.wandb)
    print(f"{written['runs']} runs; {len(written['tables'])} table files, "
          f"{len(written['figures'])} figure files, significance and stage diagnostics in {args.out}")


if __name__ == "__main__":
    main()
