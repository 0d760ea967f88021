"""The accuracy-cost Pareto frontier and the cost of closing the small-to-large gap.

A point is (cost, accuracy) of one method on one set of problems. Between two methods A and
B on the frontier, routing each problem to A with probability w and to B otherwise reaches,
in expectation, accuracy w*acc(A) + (1-w)*acc(B) at cost w*cost(A) + (1-w)*cost(B). So the
straight segments between frontier points (on a linear cost axis) are achievable, and the
cost of reaching a target accuracy is read off that piecewise-linear frontier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    label: str
    cost: float  # USD per million problems
    accuracy: float  # a fraction


def pareto_frontier(points: Sequence[Point]) -> list[Point]:
    """Points that no other point beats on both axes (no cheaper-or-equal point with
    higher-or-equal accuracy, one of them strictly), by increasing cost."""
    front: list[Point] = []
    for p in sorted(points, key=lambda q: (q.cost, -q.accuracy)):
        if not front or p.accuracy > front[-1].accuracy:
            if front and p.cost == front[-1].cost:  # equal cost, better accuracy
                front[-1] = p
            else:
                front.append(p)
    return front


def on_full_problem_set(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points that rest on the most problems of their group, the only ones a frontier
    may be drawn through: a run stopped after 7 problems is not comparable with finished
    ones (its 7 may be the easy ones), so it is shown but cannot define the frontier."""
    full = max((p["n"] for p in points), default=0)
    return [p for p in points if p["n"] == full]


def frontier_of(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points (dicts with label, n, and estimates under cost and accuracy) on the Pareto
    frontier of those on the full problem set."""
    full = on_full_problem_set(points)
    front = pareto_frontier([Point(str(i), p["cost"], p["accuracy"]) for i, p in enumerate(full)])
    return [full[int(f.label)] for f in front]


def cost_to_reach(frontier: Sequence[Point], target: float) -> float | None:
    """The lowest cost at which the piecewise-linear frontier reaches `target` accuracy, or
    None when no frontier point reaches it."""
    front = pareto_frontier(frontier)
    if not front or front[-1].accuracy < target:
        return None
    if front[0].accuracy >= target:
        return front[0].cost
    for lo, hi in zip(front, front[1:]):
        if hi.accuracy >= target:
            w = (target - lo.accuracy) / (hi.accuracy - lo.accuracy)
            return lo.cost + w * (hi.cost - lo.cost)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class GapCost:
    fraction: float  # share of the small-to-large accuracy gap closed
    target_accuracy: float
    cost: float | None  # USD per million problems; None when the frontier never gets there
    share_of_large_cost: float | None


def gap_closing_costs(points: Sequence[Point], small: Point, large: Point,
                      fractions: Sequence[float] = (0.5, 0.8, 1.0)) -> list[GapCost]:
    """The cost of closing each fraction of the gap between the small-only accuracy and the
    large-only accuracy: target = acc(small) + f * (acc(large) - acc(small)), read off the
    frontier of all points (small and large included)."""
    gap = large.accuracy - small.accuracy
    if gap <= 0:
        raise ValueError(f"no gap to close: small-only accuracy {small.accuracy:.3f} is not below "
                         f"large-only accuracy {large.accuracy:.3f}")
    front = pareto_frontier([*points, small, large])
    out = []
    for f in fractions:
        target = small.accuracy + f * gap
        cost = cost_to_reach(front, target - 1e-12)  # float noise must not miss a point
        share = cost / large.cost if cost is not None and large.cost > 0 else None
        out.append(GapCost(f, target, cost, share))
    return out
