"""Every threshold setting of a structure, evaluated at once from its stage table.

A configuration is a structure (votes, order) with one threshold per thresholded stage and a
threshold operator. On a problem its answering stage is the first whose vote has an answer
and whose confidence passes the threshold (a stage without a threshold always answers; the
last one always does), exactly as cope.confidence.base.Rule.accepts decides in a run; its
correctness is that stage's, its cost that of every stage up to it. Thresholds come from a
grid fixed before any data is seen: k/n for a consensus stage of n votes (every value its
confidence can take, and 0 so that `gt` can always accept), 0, 0.05, ..., 1 otherwise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from cope.calibration.pools import StageTable, Structure

OPS = ("gt", "ge")


@dataclass(frozen=True)
class Configuration:
    structure: Structure
    thresholds: tuple[float | None, ...]  # per stage of the order; None: no threshold
    threshold_op: str

    @property
    def label(self) -> str:
        taus = " ".join(f"{stage}>{'=' if self.threshold_op == 'ge' else ''}{tau:.4g}"
                        for stage, tau in zip(self.structure.order, self.thresholds)
                        if tau is not None)
        return f"{self.structure.label} {taus}".strip()


@dataclass
class Evaluation:
    """Configurations of one structure and, per configuration and problem, whether its answer
    is right and what it cost (arrays of shape (configurations, problems))."""

    table: StageTable
    configurations: list[Configuration]
    correct: np.ndarray
    cost: np.ndarray
    answering: np.ndarray  # index of the stage that answered


def threshold_grid(rule: str, votes: int) -> list[float]:
    if rule == "consensus":
        return [k / votes for k in range(votes + 1)]
    return [k / 20 for k in range(21)]


def configurations(table: StageTable, ops: tuple[str, ...], fixed: dict[str, float] | None = None
                   ) -> list[Configuration]:
    """Every threshold setting of the table's structure on the grid; `fixed` holds stages
    whose threshold is not searched (their pool value)."""
    fixed = fixed or {}
    axes = []
    for name, rule, has in zip(table.stages, table.rules, table.thresholded):
        if not has:
            axes.append([None])
        elif name in fixed:
            axes.append([fixed[name]])
        else:
            axes.append(threshold_grid(rule, table.structure.votes))
    return [Configuration(table.structure, taus, op)
            for op in ops for taus in itertools.product(*axes)]


def evaluate(table: StageTable, configs: list[Configuration]) -> Evaluation:
    n_stages, n_problems = table.confidence.shape
    accept = np.ones((len(configs), n_stages, n_problems), bool)
    for op in OPS:
        chosen = [i for i, c in enumerate(configs) if c.threshold_op == op]
        if not chosen:
            continue
        for s in range(n_stages - 1):
            if not table.thresholded[s]:
                continue  # Rule.accepts: a stage without a threshold always answers
            taus = np.array([configs[i].thresholds[s] for i in chosen])[:, None]
            conf = table.confidence[s][None, :]
            passes = conf > taus if op == "gt" else conf >= taus
            accept[chosen, s] = passes & table.answered[s][None, :]
    answering = accept.argmax(axis=1)  # the first stage that accepts (the last always does)
    problems = np.arange(n_problems)[None, :]
    correct = table.correct[answering, problems]
    cost = np.cumsum(table.cost, axis=0)[answering, problems]
    return Evaluation(table, configs, correct, cost, answering)
