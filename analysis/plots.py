"""Figures (matplotlib, Agg canvas), each written as PNG and PDF.

- `pareto_plot`: accuracy against cost (log cost axis), bootstrap error bars on both axes,
  the Pareto frontier, and small-only and large-only reference lines;
- `stage_plot`: problems reached and resolved per stage, and accuracy per stage;
- `calibration_plot`: accuracy of a stage's majority answer against its consensus;
- `propagation_plot`: what happened to problems passed from one stage to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.stats import bootstrap_mean_interval
from cope.results.pareto import Point, on_full_problem_set, pareto_frontier


def subplots(ncols: int = 1, figsize=(6.4, 4.4)):
    """A figure on the Agg canvas, outside pyplot: no global backend switch, nothing left
    open, the same in a script, a test or a notebook."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def png_bytes(fig) -> bytes:
    """The figure as PNG, e.g. for IPython.display.Image."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def save(fig, path: str | Path) -> list[Path]:
    """Write `path`.png and `path`.pdf; returns both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # appended, not with_suffix: labels such as "tau=0.5/0.5" put dots in the stem
    out = [path.parent / f"{path.name}.png", path.parent / f"{path.name}.pdf"]
    fig.savefig(out[0], dpi=150, bbox_inches="tight")
    # no creation date: the same figure gives the same bytes, so reruns do not churn in git
    fig.savefig(out[1], bbox_inches="tight", metadata={"CreationDate": None})
    return out


def run_point(run: dict, *, resamples: int = 2000, seed: int = 0) -> dict:
    """A run's accuracy and cost per million problems, each with a bootstrap 95% interval."""
    correct = [float(bool(p["correct"])) for p in run["problems"]]
    cost = [p["cost_usd"] * 1e6 for p in run["problems"]]
    return {"label": run["label"], "method": run["cell"]["method"], "n": len(correct),
            "accuracy": bootstrap_mean_interval(correct, resamples=resamples, seed=seed),
            "cost": bootstrap_mean_interval(cost, resamples=resamples, seed=seed)}


def pareto_plot(points: Sequence[dict], path: str | Path, title: str = "",
                gap_costs: Sequence = ()) -> list[Path]:
    return save(pareto_figure(points, title, gap_costs), path)


def pareto_figure(points: Sequence[dict], title: str = "", gap_costs: Sequence = ()):
    """`points` as from `run_point`. Methods that cost nothing (small-only) cannot sit on a
    log axis: they are drawn as horizontal reference lines, as is large alone. `gap_costs`
    (`cope.results.pareto.GapCost`) mark where the frontier closes 50/80/100% of the gap. Points
    on fewer problems than the others are drawn hollow and kept off the frontier."""
    fig, ax = subplots(figsize=(6.4, 4.4))
    priced = [p for p in points if p["cost"].estimate > 0]
    full = on_full_problem_set(points)
    front = pareto_frontier([Point(p["label"], p["cost"].estimate, p["accuracy"].estimate)
                             for p in full])
    for p in priced:
        acc, cost = p["accuracy"], p["cost"]
        hollow = p["n"] < full[0]["n"]
        # a percentile interval need not hold its estimate to the last bit: errors are >= 0
        ax.errorbar(cost.estimate, 100 * acc.estimate,
                    xerr=[[max(0.0, cost.estimate - cost.low)], [max(0.0, cost.high - cost.estimate)]],
                    yerr=[[max(0.0, 100 * (acc.estimate - acc.low))],
                          [max(0.0, 100 * (acc.high - acc.estimate))]],
                    fmt="o", capsize=3, mfc="none" if hollow else None,
                    label=f"{p['label']} (n={p['n']}{', fewer problems' if hollow else ''})")
    front_priced = [f for f in front if f.cost > 0]
    if front_priced:
        ax.plot([f.cost for f in front_priced], [100 * f.accuracy for f in front_priced], "k--",
                lw=1, alpha=0.6, label="Pareto frontier")
    styles = {"small_single": ":", "small_majority": "-.", "large": "-"}
    for p in points:
        if p["label"] in styles:
            ax.axhline(100 * p["accuracy"].estimate, color="grey", ls=styles[p["label"]], lw=1,
                       label=f"{p['label']} accuracy (n={p['n']})")
        if p["label"] == "large" and p["cost"].estimate > 0:
            ax.axvline(p["cost"].estimate, color="grey", ls="-", lw=0.6, alpha=0.6,
                       label="large cost")
    for g in gap_costs:
        if g.cost is not None and g.cost > 0:
            ax.plot([g.cost], [100 * g.target_accuracy], marker="x", color="black", ms=7, ls="none",
                    label=f"{100 * g.fraction:.0f}% of gap closed")
    if priced:
        ax.set_xscale("log")
    ax.set_xlabel("cost (USD per million problems, log scale)" if priced else
                  "cost (USD per million problems): every method costs 0")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.grid(alpha=0.3, which="both")
    return fig


def stage_plot(table: Sequence[dict], path: str | Path, title: str = "") -> list[Path]:
    """`table` from `analysis.stages.stage_table`."""
    fig, (left, right) = subplots(2, figsize=(8, 3.4))
    names = [row["stage"] for row in table]
    x = np.arange(len(names))
    left.bar(x - 0.2, [row["reached"] for row in table], 0.4, label="reached")
    left.bar(x + 0.2, [row["resolved"] for row in table], 0.4, label="resolved")
    left.set_xticks(x, names)
    left.set_ylabel("problems")
    left.legend(fontsize=8)
    pct = lambda v: 100 * v if v is not None else np.nan  # noqa: E731
    right.bar(x - 0.2, [pct(row["stage_accuracy"]) for row in table], 0.4,
              label="stage answer, all reached")
    right.bar(x + 0.2, [pct(row["resolved_accuracy"]) for row in table], 0.4,
              label="resolved there")
    right.set_xticks(x, names)
    right.set_ylim(0, 100)
    right.set_ylabel("accuracy (%)")
    right.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def calibration_plot(bins: Sequence[dict], path: str | Path, title: str = "") -> list[Path]:
    """`bins` from `analysis.stages.calibration`: marker area grows with the count."""
    fig, ax = subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="calibrated")
    for stage in dict.fromkeys(b["stage"] for b in bins):
        rows = [b for b in bins if b["stage"] == stage]
        ax.plot([b["consensus"] for b in rows], [b["accuracy"] for b in rows], "-", lw=1)
        ax.scatter([b["consensus"] for b in rows], [b["accuracy"] for b in rows],
                   s=[20 + 8 * b["n"] for b in rows], alpha=0.7,
                   label=f"{stage} ({sum(b['n'] for b in rows)} problems)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("consensus (share of votes for the majority answer)")
    ax.set_ylabel("accuracy of the majority answer")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save(fig, path)


PROPAGATION_KEYS = ("wrong_then_right", "wrong_then_same_wrong", "wrong_then_other_wrong",
                    "right_then_wrong", "right_then_right")


def propagation_plot(flows: dict[str, dict], path: str | Path, title: str = "") -> list[Path]:
    """`flows` from `analysis.stages.propagation`: one stacked bar per stage transition."""
    fig, ax = subplots(figsize=(6.4, 1.2 + 0.6 * max(1, len(flows))))
    names = list(flows)
    left = np.zeros(len(names))
    for key in PROPAGATION_KEYS:
        values = np.array([flows[n][key] for n in names], float)
        ax.barh(names, values, left=left, label=key.replace("_", " "))
        left += values
    ax.invert_yaxis()  # the first transition on top
    ax.set_xlabel("problems escalated")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3)
    return save(fig, path)
