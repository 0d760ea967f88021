"""What a calibration asks for, and the loss in [0, 1] whose mean it bounds.

    accuracy>=large-0.02   paired with large alone on the same dev problems: per problem
                           (wrong - large wrong + 1) / 2, at most (1 + 0.02) / 2 on average
    accuracy>=0.6          the error rate, at most 0.4
    cost<=0.6*large        cost per problem over the largest any configuration paid on a dev
    cost<=150              problem (USD per 1M problems), at most the budget over that bound

An accuracy target makes cost the objective (the cheapest certified configuration); a cost
target makes accuracy the objective (the most accurate certified one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cope.errors import ConfigError

_ACCURACY = re.compile(r"^accuracy>=(?:(large)(?:-([0-9.]+))?|([0-9.]+))$")
_COST = re.compile(r"^cost<=(?:([0-9.]+)\*large|(large)|([0-9.]+))$")


@dataclass(frozen=True)
class Target:
    text: str
    kind: str  # accuracy or cost
    relative: bool  # against large alone
    value: float  # accuracy: epsilon (relative) or the accuracy; cost: fraction or USD per 1M

    @property
    def needs_reference(self) -> bool:
        return self.relative


def parse_target(text: str) -> Target:
    spec = text.replace(" ", "")
    if match := _ACCURACY.match(spec):
        large, eps, absolute = match.groups()
        if large:
            return Target(text, "accuracy", True, float(eps or 0.0))
        if not 0 < float(absolute) <= 1:
            raise ConfigError(f"--target {text!r}: an accuracy is a share in (0, 1].")
        return Target(text, "accuracy", False, float(absolute))
    if match := _COST.match(spec):
        fraction, large, usd = match.groups()
        if fraction or large:
            return Target(text, "cost", True, float(fraction or 1.0))
        return Target(text, "cost", False, float(usd))
    raise ConfigError(f"--target {text!r}: write accuracy>=large-EPS, accuracy>=A, "
                      "cost<=F*large or cost<=USD (per 1M problems).")


@dataclass
class Risk:
    """Per configuration and problem, the loss; the level alpha its mean must stay under;
    and the objective to minimise (mean cost, or minus accuracy)."""

    losses: np.ndarray
    alpha: float
    objective: np.ndarray  # per configuration and problem
    statement: str  # what a certified configuration satisfies, in words
    cost_bound: float | None = None  # USD per problem, for a cost target


def risk_of(target: Target, correct: np.ndarray, cost: np.ndarray,
            reference_correct: np.ndarray | None, reference_cost: float | None) -> Risk:
    """`correct` and `cost` are (configurations, problems); the reference is large alone on
    the same problems (per problem correctness, mean cost per problem)."""
    wrong = ~correct
    if target.kind == "accuracy":
        if target.relative:
            losses = (wrong.astype(float) - (~reference_correct).astype(float) + 1) / 2
            alpha = (1 + target.value) / 2
            statement = f"accuracy >= large alone's - {target.value:g}"
        else:
            losses, alpha = wrong.astype(float), 1 - target.value
            statement = f"accuracy >= {target.value:g}"
        return Risk(losses, alpha, cost, statement)
    budget = target.value * reference_cost if target.relative else target.value / 1e6
    bound = float(cost.max()) if cost.size else 0.0
    if bound <= 0:
        raise ConfigError("every configuration is free on these pools: a cost target says "
                          "nothing (price the models, conf/prices/).")
    statement = (f"cost <= {target.value:g} x large alone's" if target.relative
                 else f"cost <= ${target.value:g} per 1M problems")
    return Risk(cost / bound, budget / bound, -correct.astype(float), statement, bound)
