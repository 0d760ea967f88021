"""Paired significance across a sweep: every cell against large alone and against each
baseline, on the problems both runs finished, with Holm's correction within each family
(one reference, one task and pair), and mean and standard deviation across seeds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cope.results.runs import BASELINES, run_summary
from analysis.stats import compare, holm, mean_std


def _reference_for(run: dict, candidates: list[dict]) -> dict | None:
    """The reference run with the same seed, else the lowest seed (with most problems)."""
    same = [r for r in candidates if r["cell"]["seed"] == run["cell"]["seed"]]
    pool = same or candidates
    return min(pool, key=lambda r: (r["cell"]["seed"], -len(r["problems"]))) if pool else None


def comparisons(runs: Sequence[dict], *, resamples: int = 10_000, seed: int = 0) -> list[dict]:
    """One row per (run, reference baseline) pair; `p_holm` adjusts within each family."""
    rows: list[dict[str, Any]] = []
    for (task, pair), group in _settings(runs).items():
        refs = {m: [r for r in group if r["cell"]["method"] == m and r["label"] == m]
                for m in BASELINES}
        for run in group:
            for ref_method, candidates in refs.items():
                ref = _reference_for(run, candidates)
                if ref is None or ref is run or not _wanted(run, ref_method):
                    continue
                result = compare(run["problems"], ref["problems"], resamples=resamples, seed=seed)
                rows.append({"task": task, "pair": pair, "method": run["label"],
                             "seed": run["cell"]["seed"], "reference": ref_method,
                             "reference_seed": ref["cell"]["seed"],
                             "partial": not (run["finished"] and ref["finished"]),
                             "family": f"{task}/{pair} vs {ref_method}", **result})
    families = defaultdict(list)
    for i, row in enumerate(rows):
        if row["n"]:
            families[row["family"]].append(i)
    for members in families.values():
        for i, p in zip(members, holm([rows[i]["p_value"] for i in members])):
            rows[i]["p_holm"] = p
    return rows


def _wanted(run: dict, ref_method: str) -> bool:
    """Methods against every baseline; a baseline only against those listed before it (so
    each pair of baselines is tested once)."""
    label = run["label"]
    if label in BASELINES:
        return BASELINES.index(ref_method) < BASELINES.index(label)
    return True


def _settings(runs: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        out[(run["cell"]["task"], run["cell"]["pair"])].append(run)
    return dict(sorted(out.items()))


def seed_summary(runs: Sequence[dict]) -> list[dict]:
    """Mean and sample standard deviation of accuracy and cost across the seeds of a cell."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        c = run["cell"]
        groups[(c["task"], c["pair"], run["label"])].append(run_summary(run))
    out = []
    for (task, pair, label), summaries in sorted(groups.items()):
        if len(summaries) < 2:
            continue
        acc = mean_std([s["accuracy"] for s in summaries])
        cost = mean_std([s["cost_usd_per_million"] for s in summaries])
        out.append({"task": task, "pair": pair, "method": label,
                    "seeds": sorted(s["seed"] for s in summaries),
                    "n": sorted({s["n"] for s in summaries}),
                    "accuracy_mean": acc[0], "accuracy_std": acc[1],
                    "cost_mean": cost[0], "cost_std": cost[1]})
    return out


def interval(d: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if not d:
        return "-"
    return (f"{scale * d['estimate']:+.{digits}f} [{scale * d['low']:+.{digits}f}, "
            f"{scale * d['high']:+.{digits}f}]")


def ratio(d: dict | None) -> str:
    if not d:
        return "- (reference costs 0)"
    return f"{d['estimate']:.2f} [{d['low']:.2f}, {d['high']:.2f}]"


def markdown(rows: Sequence[dict], seeds: Sequence[dict]) -> str:
    out = ["## Paired comparisons", "",
           "Each method against each baseline, on the problems both runs finished (n). "
           "acc: accuracy in % with a 95% Wilson interval; diff: accuracy difference in "
           "percentage points with a 95% paired bootstrap interval; cost ratio: total cost of "
           "the method over the reference's, paired bootstrap 95%; A/B only: problems only "
           "the method / only the reference got right; p: McNemar's exact two-sided test; "
           "p (Holm): adjusted within each family (same reference, task and pair).", ""]
    if not rows:
        out += ["No comparisons: they need a baseline run (large, small_single or "
                "small_majority) and another run of the same task and pair.", ""]
    for family in dict.fromkeys(row["family"] for row in rows):
        out += [f"### {family}", "",
                "| method | seed | n | acc | reference acc | diff (pp) | cost ratio | A/B only "
                "| p | p (Holm) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (row for row in rows if row["family"] == family):
            if not r["n"]:
                out.append(f"| {r['method']} | {r['seed']} | 0 | no shared problems |||||||")
                continue
            def acc(k, r=r):
                low, high = r[k + "_ci"]
                return f"{100 * r[k]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

            n = f"{r['n']}{' (partial)' if r['partial'] else ''}"
            out.append(
                f"| {r['method']} | {r['seed']} | {n} | {acc('accuracy_a')} | {acc('accuracy_b')} "
                f"| {interval(r['accuracy_difference'], 100)} | {ratio(r.get('cost_ratio'))} "
                f"| {r['only_a']}/{r['only_b']} | {r['p_value']:.3g} | {r['p_holm']:.3g} |")
        out.append("")
    if seeds:
        out += ["## Across seeds", "", "| task | pair | method | seeds | n | accuracy % | "
                "cost (USD / 1M problems) |", "|---|---|---|---|---|---|---|"]
        for s in seeds:
            out.append(f"| {s['task']} | {s['pair']} | {s['method']} | "
                       f"{','.join(map(str, s['seeds']))} | {'/'.join(map(str, s['n']))} | "
                       f"{100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.2f} | "
                       f"{s['cost_mean']:,.1f} ± {s['cost_std']:.1f} |")
        out.append("")
    return "\n".join(out)
