"""Significance for paired per-problem results: what a claim like "COPE matches the large
model at lower cost" needs before a reviewer accepts it.

All comparisons are paired: two methods run on the same problems, so per-problem
correctness and cost are compared problem by problem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class McNemarResult:
    only_a: int  # problems A got right and B got wrong
    only_b: int  # problems B got right and A got wrong
    p_value: float  # exact two-sided


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemarResult:
    """McNemar's exact test: under H0 the discordant pairs split 50/50 (two-sided binomial)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired results differ in length: {a.size} and {b.size}")
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    discordant = only_a + only_b
    if discordant == 0:
        return McNemarResult(only_a, only_b, 1.0)
    p = stats.binomtest(min(only_a, only_b), discordant, 0.5, alternative="two-sided").pvalue
    return McNemarResult(only_a, only_b, float(min(1.0, p)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a single accuracy."""
    if n <= 0:
        raise ValueError("n must be positive")
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class BootstrapResult:
    estimate: float
    low: float
    high: float


def paired_bootstrap(correct_a: Sequence[bool], correct_b: Sequence[bool],
                     cost_a: Sequence[float], cost_b: Sequence[float], *,
                     resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
                     ) -> dict[str, BootstrapResult]:
    """Percentile intervals for accuracy(A) - accuracy(B) and cost(A) / cost(B), resampling
    problems (the pairs stay together)."""
    a, b = np.asarray(correct_a, float), np.asarray(correct_b, float)
    ca, cb = np.asarray(cost_a, float), np.asarray(cost_b, float)
    n = a.size
    if not (b.size == ca.size == cb.size == n) or n == 0:
        raise ValueError("paired bootstrap needs four sequences of one non-zero length")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    cost_b_sums = cb[idx].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ca[idx].sum(axis=1) / cost_b_sums
    ratios = ratios[np.isfinite(ratios)]
    tail = (1 - confidence) / 2 * 100
    out = {"accuracy_difference": BootstrapResult(
        float(a.mean() - b.mean()), *map(float, np.percentile(diffs, [tail, 100 - tail])))}
    if cb.sum() > 0 and ratios.size:
        out["cost_ratio"] = BootstrapResult(
            float(ca.sum() / cb.sum()), *map(float, np.percentile(ratios, [tail, 100 - tail])))
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (family-wise error control
    across the cells of a sweep)."""
    p = np.asarray(p_values, float)
    m = p.size
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) across seeds, as the paper's Table 13."""
    x = np.asarray(values, float)
    if x.size == 0:
        raise ValueError("no values")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0
