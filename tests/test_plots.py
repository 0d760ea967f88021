"""Figures: files written as PNG and PDF, and what they draw."""

import matplotlib.image
import pytest

from cope.results.pareto import Point, pareto_frontier
from analysis.plots import (
    calibration_plot, on_full_problem_set, pareto_figure, pareto_plot, propagation_plot,
    stage_plot,
)
from analysis.stats import BootstrapResult


def point(label, cost, acc):
    return {"label": label, "method": label.split()[0], "n": 100,
            "accuracy": BootstrapResult(acc, acc - 0.05, acc + 0.05),
            "cost": BootstrapResult(cost, 0.8 * cost, 1.2 * cost)}


POINTS = [point("small_single", 0.0, 0.40), point("small_majority", 0.0, 0.55),
          point("large", 100.0, 0.80), point("cope", 40.0, 0.78), point("cope_s1s2", 10.0, 0.60),
          point("cope n=4", 50.0, 0.70)]


def assert_written(paths):
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    height, width, _ = matplotlib.image.imread(png).shape
    assert height > 200 and width > 200
    assert width <= 3.7 * 150  # a paper's column (3.4 in) at 150 dpi, with a tight bounding box


def test_pareto_figure_draws_the_frontier_and_reference_lines(tmp_path):
    fig = pareto_figure(POINTS, "hand-made")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    front = pareto_frontier([Point(p["label"], p["cost"].estimate, p["accuracy"].estimate)
                             for p in POINTS])
    assert [p.label for p in front] == ["small_majority", "cope_s1s2", "cope", "large"]
    frontier = lines["Pareto frontier"]
    # free methods cannot sit on the log axis: the frontier line starts at the first priced one
    assert list(frontier.get_xdata()) == [10.0, 40.0, 100.0]
    assert list(frontier.get_ydata()) == pytest.approx([60.0, 78.0, 80.0])
    assert list(lines["small_majority accuracy (n=100)"].get_ydata()) == pytest.approx([55.0, 55.0])
    assert list(lines["large accuracy (n=100)"].get_ydata()) == pytest.approx([80.0, 80.0])
    assert ax.get_xscale() == "log"
    assert_written(pareto_plot(POINTS, tmp_path / "figs" / "pareto tau=0.5/0.5".replace("/", "-"),
                               "hand-made"))
    assert (tmp_path / "figs" / "pareto tau=0.5-0.5.png").exists()  # dots kept in the name


def test_a_point_on_fewer_problems_is_drawn_hollow_and_kept_off_the_frontier():
    partial = dict(point("cope_s2s3", 20.0, 1.0), n=7)  # 7 of 7 right: not comparable
    assert [p["label"] for p in on_full_problem_set([*POINTS, partial])] == [
        p["label"] for p in POINTS]
    fig = pareto_figure([*POINTS, partial])
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["Pareto frontier"].get_xdata()) == [10.0, 40.0, 100.0]
    drawn = {c.lines[0].get_gid(): c.lines[0] for c in ax.containers}
    assert drawn["cope_s2s3"].get_markerfacecolor() == "none"
    assert any(t.get_text() == "cope_s2s3 (n=7)" for panel in fig.axes for t in panel.texts)


def test_each_method_has_its_own_colour_and_marker_and_every_point_a_label():
    from cope.results.styles import KNOWN, method_style

    styles = [tuple(method_style(m).values()) for m in KNOWN]
    assert len(set(styles)) == len(KNOWN)  # the paper's methods and baselines never share one
    fig = pareto_figure(POINTS)
    overview, zoom = fig.axes  # four priced points: three of them crowd into a zoomed panel
    drawn = {c.lines[0].get_gid(): c.lines[0] for ax in fig.axes for c in ax.containers}
    for label, line in drawn.items():
        style = method_style(label.split()[0])
        assert (line.get_color(), line.get_marker()) == (style["colour"], style["marker"])
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sorted(labels) == sorted(p["label"] for p in POINTS if p["cost"].estimate > 0)
    assert zoom.get_xscale() == "linear" and overview.get_xscale() == "log"
    low, high = zoom.get_xlim()
    assert low < 40.0 and high > 100.0 and low > 10.0  # cope_s1s2 (10) stays in the overview
    # labels overlap neither each other nor the axes' edges
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    # a paper's column
    assert fig.get_size_inches()[0] == pytest.approx(3.4)
    assert drawn["cope"].get_markerfacecolor() != "none"


def test_stage_calibration_and_propagation_plots_are_written(tmp_path):
    table = [{"stage": "s1", "reached": 10, "resolved": 4, "resolved_accuracy": 0.75,
              "stage_accuracy": 0.5, "mean_consensus": 0.6},
             {"stage": "s2", "reached": 6, "resolved": 6, "resolved_accuracy": None,
              "stage_accuracy": None, "mean_consensus": None}]
    assert_written(stage_plot(table, tmp_path / "stages", "t"))
    bins = [{"stage": "s1", "consensus": 0.5, "n": 3, "accuracy": 0.33},
            {"stage": "s1", "consensus": 1.0, "n": 5, "accuracy": 0.8}]
    assert_written(calibration_plot(bins, tmp_path / "calibration", "t"))
    flows = {"s1->s2": {"escalated": 6, "wrong_then_right": 2, "wrong_then_same_wrong": 1,
                        "wrong_then_other_wrong": 1, "right_then_wrong": 1, "right_then_right": 1}}
    assert_written(propagation_plot(flows, tmp_path / "propagation", "t"))


def test_the_same_figure_saves_to_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")  # two saves years apart
    first = [p.read_bytes() for p in pareto_plot(POINTS, tmp_path / "a")]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    second = [p.read_bytes() for p in pareto_plot(POINTS, tmp_path / "b")]
    assert first == second
