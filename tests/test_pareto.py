"""The Pareto frontier and the cost of closing the small-to-large gap, on hand-made points."""

import pytest

from cope.results.pareto import Point, cost_to_reach, gap_closing_costs, pareto_frontier

SMALL = Point("small", 0.0, 0.50)
LARGE = Point("large", 100.0, 0.80)
POINTS = [
    Point("a", 20.0, 0.60),
    Point("b", 40.0, 0.75),
    Point("dominated", 50.0, 0.70),  # b is cheaper and better
    Point("c", 60.0, 0.82),
    Point("tie-cost-worse", 60.0, 0.79),
    Point("pricier-not-better", 120.0, 0.82),
]


def test_frontier_keeps_only_undominated_points_by_cost():
    front = pareto_frontier([*POINTS, SMALL, LARGE])
    assert [p.label for p in front] == ["small", "a", "b", "c"]
    # large (100, 0.80) is beaten by c (60, 0.82); an equal-accuracy pricier point is not kept
    assert pareto_frontier([Point("x", 1, 0.5), Point("y", 2, 0.5)]) == [Point("x", 1, 0.5)]
    assert pareto_frontier([]) == []


def test_cost_to_reach_interpolates_linearly_between_frontier_points():
    front = pareto_frontier([*POINTS, SMALL])
    assert cost_to_reach(front, 0.50) == 0.0
    assert cost_to_reach(front, 0.55) == pytest.approx(10.0)  # halfway small -> a
    assert cost_to_reach(front, 0.70) == pytest.approx(20 + 20 * (0.10 / 0.15))
    assert cost_to_reach(front, 0.82) == pytest.approx(60.0)
    assert cost_to_reach(front, 0.83) is None


def test_gap_closing_costs_on_a_hand_made_frontier():
    # gap 0.50 -> 0.80: 50% is 0.65, 80% is 0.74, 100% is 0.80
    costs = gap_closing_costs(POINTS, SMALL, LARGE)
    assert [g.fraction for g in costs] == [0.5, 0.8, 1.0]
    assert [g.target_accuracy for g in costs] == pytest.approx([0.65, 0.74, 0.80])
    expected = [20 + 20 * (0.05 / 0.15), 20 + 20 * (0.14 / 0.15), 40 + 20 * (0.05 / 0.07)]
    assert [g.cost for g in costs] == pytest.approx(expected)
    assert [g.share_of_large_cost for g in costs] == pytest.approx([c / 100 for c in expected])
    # without cheaper methods, closing the whole gap costs what large costs
    only = gap_closing_costs([], SMALL, LARGE)
    assert only[-1].cost == pytest.approx(100.0) and only[0].cost == pytest.approx(50.0)


def test_gap_needs_a_gap():
    with pytest.raises(ValueError, match="no gap to close"):
        gap_closing_costs(POINTS, Point("small", 0, 0.9), LARGE)
