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


# a paper's column: 3.4 inches wide, text no smaller than 6 points when printed
COLUMN_WIDTH_IN = 3.4
PAPER_TEXT = {"font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "xtick.labelsize": 6.5,
              "ytick.labelsize": 6.5, "legend.fontsize": 6}


def subplots(ncols: int = 1, figsize=(6.4, 4.4), vertical: bool = False):
    """A figure on the Agg canvas, outside pyplot: no global backend switch, nothing left
    open, the same in a script, a test or a notebook; `vertical` stacks the panels."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(ncols, 1) if vertical else fig.subplots(1, ncols)


def png_bytes(fig) -> bytes:
    """The figure as PNG, e.g. for IPython.display.Image."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def paper_text(draw):
    """Run a figure function with a paper's text sizes (text takes its size when drawn)."""
    import functools

    import matplotlib

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with matplotlib.rc_context(PAPER_TEXT):
            return draw(*args, **kwargs)
    return drawn


@paper_text
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


def crowded_window(costs: Sequence[float]) -> tuple[float, float] | None:
    """The narrowest cost range (by ratio) holding three quarters of the priced points, at
    least three, where a log axis over all of them piles points up; None when there are
    too few to crowd."""
    costs = sorted(c for c in costs if c > 0)
    k = max(3, -(-3 * len(costs) // 4))
    if len(costs) < 4:
        return None
    best = min(range(len(costs) - k + 1), key=lambda i: costs[i + k - 1] / costs[i])
    lo, hi = costs[best], costs[best + k - 1]
    return (lo, hi) if hi > lo else None


def pareto_figure(points: Sequence[dict], title: str = "", gap_costs: Sequence = ()):
    """`points` as from `run_point`, at a paper's column width. The top panel has every
    method on a log cost axis; methods that cost nothing (small-only) cannot sit on it and
    are horizontal lines. Below, the crowded cost range (`crowded_window`) on a linear
    axis, its points labelled there. Each method has its own colour and marker
    (`cope.results.styles`, as in `cope view`); frontier points are ringed in black and
    joined by the frontier line. `gap_costs` (`cope.results.pareto.GapCost`) mark where the
    frontier closes 50/80/100% of the gap. Points on fewer problems than the others are
    drawn hollow and kept off the frontier."""
    import matplotlib
    from matplotlib.lines import Line2D

    with matplotlib.rc_context(PAPER_TEXT):
        priced = [p for p in points if p["cost"].estimate > 0]
        window = crowded_window([p["cost"].estimate for p in priced])
        fig, axes = subplots(2 if window else 1, figsize=(COLUMN_WIDTH_IN, 5.6 if window else 3.4),
                             vertical=True)
        axes = list(axes) if window else [axes]
        full = on_full_problem_set(points)
        front = pareto_frontier([Point(p["label"], p["cost"].estimate, p["accuracy"].estimate)
                                 for p in full])
        on_front = {f.label for f in front}
        inside = (lambda p: window[0] <= p["cost"].estimate <= window[1]) if window else (lambda p: False)
        overview = _pareto_panel(axes[0], points, full, on_front, front, gap_costs, log=bool(priced))
        axes[0].set_title(title)
        if window:
            zoomed = [p for p in priced if inside(p)]
            zoom = _pareto_panel(axes[1], zoomed, full, on_front, front, gap_costs, log=False,
                                 references=False)
            pad = 0.06 * (window[1] - window[0])
            axes[1].set_xlim(window[0] - pad, window[1] + pad)
            accs = [100 * p["accuracy"].estimate for p in zoomed]
            axes[1].set_ylim(min(accs) - 3, max(accs) + 3)
            axes[1].set_title(f"zoom: {window[0]:,.0f} to {window[1]:,.0f} USD per 1M (linear)")
            axes[0].axvspan(window[0], window[1], color="0.85", alpha=0.5, lw=0, zorder=0)
        handles, labels = axes[0].get_legend_handles_labels()
        if any(p["n"] < full[0]["n"] for p in points):
            handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec="0.3"))
            labels.append("fewer problems: off the frontier")
        fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
        # labels last, once every panel's limits are final
        fig.canvas.draw()
        overview([p for p in points if not inside(p)])
        if window:
            zoom(zoomed)
    return fig


def _pareto_panel(ax, points, full, on_front, front, gap_costs, *, log: bool,
                  references: bool = True):
    """Draw the points on `ax`; returns the function that labels a list of them."""
    from cope.results.styles import method_style

    n_full = full[0]["n"] if full else 0
    drawn = []
    for p in points:
        acc, cost = p["accuracy"], p["cost"]
        if cost.estimate <= 0:
            continue
        style = method_style(p["method"])
        hollow = p["n"] < n_full
        is_front = p["label"] in on_front and not hollow
        # a percentile interval need not hold its estimate to the last bit: errors are >= 0
        ax.errorbar(cost.estimate, 100 * acc.estimate,
                    xerr=[[max(0.0, cost.estimate - cost.low)], [max(0.0, cost.high - cost.estimate)]],
                    yerr=[[max(0.0, 100 * (acc.estimate - acc.low))],
                          [max(0.0, 100 * (acc.high - acc.estimate))]],
                    fmt=style["marker"], color=style["colour"], ecolor=style["colour"],
                    elinewidth=0.5, alpha=0.85, capsize=1.2, ms=6 if is_front else 4.5,
                    mfc="none" if hollow else style["colour"],
                    mec="black" if is_front else style["colour"], mew=1.1 if is_front else 0.6,
                    zorder=3, gid=p["label"])
        drawn.append(p)
    front_priced = [f for f in front if f.cost > 0]
    if len(front_priced) > 1:
        ax.plot([f.cost for f in front_priced], [100 * f.accuracy for f in front_priced],
                color="black", ls="--", lw=1.4, zorder=2, label="Pareto frontier" if references else None)
    if references:
        styles = {"small_single": ":", "small_majority": "-.", "large": "-"}
        for p in points:
            if p["label"] in styles:
                ax.axhline(100 * p["accuracy"].estimate, color=method_style(p["method"])["colour"],
                           ls=styles[p["label"]], lw=0.9, zorder=1,
                           label=f"{p['label']} accuracy (n={p['n']})")
            if p["label"] == "large" and p["cost"].estimate > 0:
                ax.axvline(p["cost"].estimate, color="grey", ls="-", lw=0.5, alpha=0.6,
                           label="large cost")
        for g in gap_costs:
            if g.cost is not None and g.cost > 0:
                ax.plot([g.cost], [100 * g.target_accuracy], marker="x", color="black", ms=5,
                        ls="none", label=f"{100 * g.fraction:.0f}% of gap closed")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("cost (USD per million problems" + (", log scale)" if log else ")")
                  if any(p["cost"].estimate > 0 for p in points) else
                  "cost (USD per million problems): every method costs 0")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3, which="both", lw=0.4)

    def label(chosen) -> None:
        # methods at the same point (FrugalGPT that always escalates, and large) share one
        names: dict[tuple, list[str]] = {}
        for p in drawn:
            names.setdefault((p["cost"].estimate, p["accuracy"].estimate), []).append(p["label"])
        renderer = ax.figure.canvas.get_renderer()
        placed = [_marker_box(ax, p) for p in drawn]  # labels keep off every marker
        done: set[tuple] = set()
        for p in sorted((p for p in drawn if p in chosen), key=lambda q: q["label"] not in on_front):
            where = (p["cost"].estimate, p["accuracy"].estimate)
            if where in done:
                continue
            done.add(where)
            hollow = p["n"] < n_full
            _place_label(ax, p["cost"].estimate, 100 * p["accuracy"].estimate,
                         " = ".join(names[where]) + (f" (n={p['n']})" if hollow else ""), placed,
                         renderer, bold=p["label"] in on_front and not hollow)

    return label


def _marker_box(ax, p):
    from matplotlib.transforms import Bbox

    x, y = ax.transData.transform((p["cost"].estimate, 100 * p["accuracy"].estimate))
    return Bbox([[x - 4, y - 4], [x + 4, y + 4]])


# offsets (points) and alignments tried in turn for a point's label
_LABEL_SPOTS = ((4, 3, "left", "bottom"), (-4, 3, "right", "bottom"), (4, -3, "left", "top"),
                (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"))


def _place_label(ax, x: float, y: float, text: str, placed: list, renderer,
                 bold: bool = False) -> None:
    """Annotate (x, y) with `text` at the first spot whose box overlaps nothing placed
    before and stays inside the axes; where none is free the label goes to the first spot."""
    inside = ax.get_window_extent(renderer)
    first = None
    for dx, dy, ha, va in _LABEL_SPOTS:
        note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha,
                           va=va, fontsize=6, fontweight="bold" if bold else "normal", zorder=4)
        box = note.get_window_extent(renderer)
        free = not any(box.overlaps(other) for other in placed) and (
            inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1)
        if free:
            placed.append(box)
            if first is not None:
                first.remove()
            return
        if first is None:
            first = note
        else:
            note.remove()
    placed.append(first.get_window_extent(renderer))


@paper_text
def stage_plot(table: Sequence[dict], path: str | Path, title: str = "") -> list[Path]:
    """`table` from `analysis.stages.stage_table`."""
    fig, (left, right) = subplots(2, figsize=(COLUMN_WIDTH_IN, 2.5))
    names = [row["stage"] for row in table]
    x = np.arange(len(names))
    left.bar(x - 0.2, [row["reached"] for row in table], 0.4, label="reached")
    left.bar(x + 0.2, [row["resolved"] for row in table], 0.4, label="resolved")
    left.set_xticks(x, names)
    left.set_ylabel("problems")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    pct = lambda v: 100 * v if v is not None else np.nan  # noqa: E731
    right.bar(x - 0.2, [pct(row["stage_accuracy"]) for row in table], 0.4,
              label="stage answer, all reached")
    right.bar(x + 0.2, [pct(row["resolved_accuracy"]) for row in table], 0.4,
              label="resolved there")
    right.set_xticks(x, names)
    right.set_ylim(0, 100)
    right.set_ylabel("accuracy (%)")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.suptitle(title)
    return save(fig, path)


@paper_text
def calibration_plot(bins: Sequence[dict], path: str | Path, title: str = "") -> list[Path]:
    """`bins` from `analysis.stages.calibration`: marker area grows with the count."""
    fig, ax = subplots(figsize=(COLUMN_WIDTH_IN, 3.1))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="calibrated")
    for stage in dict.fromkeys(b["stage"] for b in bins):
        rows = [b for b in bins if b["stage"] == stage]
        ax.plot([b["consensus"] for b in rows], [b["accuracy"] for b in rows], "-", lw=1)
        ax.scatter([b["consensus"] for b in rows], [b["accuracy"] for b in rows],
                   s=[8 + 3 * b["n"] for b in rows], alpha=0.7,
                   label=f"{stage} ({sum(b['n'] for b in rows)} problems)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("consensus (share of votes for the majority answer)")
    ax.set_ylabel("accuracy of the majority answer")
    ax.set_title(title)
    ax.legend()
    return save(fig, path)


PROPAGATION_KEYS = ("wrong_then_right", "wrong_then_same_wrong", "wrong_then_other_wrong",
                    "right_then_wrong", "right_then_right")


@paper_text
def propagation_plot(flows: dict[str, dict], path: str | Path, title: str = "") -> list[Path]:
    """`flows` from `analysis.stages.propagation`: one stacked bar per stage transition."""
    fig, ax = subplots(figsize=(COLUMN_WIDTH_IN, 1.3 + 0.45 * max(1, len(flows))))
    names = list(flows)
    left = np.zeros(len(names))
    for key in PROPAGATION_KEYS:
        values = np.array([flows[n][key] for n in names], float)
        ax.barh(names, values, left=left, label=key.replace("_", " "))
        left += values
    ax.invert_yaxis()  # the first transition on top
    ax.set_xlabel("problems escalated")
    ax.set_title(title)
    fig.legend(loc="outside lower center", ncol=2, frameon=False)
    return save(fig, path)


@paper_text
def signal_plot(stages: Sequence[dict], path: str | Path, title: str = "") -> list[Path]:
    """`stages` from `analysis.signal.stage_signal`: a reliability diagram (accuracy of each
    confidence bin against its mean confidence; marker area grows with the count) and the
    risk-coverage curve, one line per stage."""
    fig, (left, right) = subplots(2, figsize=(COLUMN_WIDTH_IN, 2.3))
    left.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    for s in stages:
        if not s["reached"]:
            continue
        ece = "-" if s["ece"] is None else f"{s['ece']:.2f}"
        auroc = "-" if s["auroc"] is None else f"{s['auroc']:.2f}"
        line, = left.plot([b["confidence"] for b in s["bins"]], [b["accuracy"] for b in s["bins"]],
                          "-", lw=0.8)
        left.scatter([b["confidence"] for b in s["bins"]], [b["accuracy"] for b in s["bins"]],
                     s=[4 + 2 * b["n"] for b in s["bins"]], color=line.get_color(), alpha=0.7)
        curve = s["risk_coverage"]
        right.step([0.0] + [c["coverage"] for c in curve], [curve[0]["risk"]] + [c["risk"] for c in curve],
                   where="post", color=line.get_color(), lw=1,
                   label=f"{s['stage']}: AUROC {auroc}, ECE {ece}")
    left.set_xlim(0, 1.02)
    left.set_ylim(-0.03, 1.03)
    left.set_xlabel("confidence")
    left.set_ylabel("accuracy")
    left.set_title("reliability")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("coverage")
    right.set_ylabel("risk (error rate)")
    right.set_title("risk-coverage")
    fig.suptitle(title)
    fig.legend(loc="outside lower center", ncol=1, frameon=False)
    return save(fig, path)
