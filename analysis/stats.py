"""Significance for paired per-problem results: what a claim like "COPE matches the large
model at lower cost" needs before a reviewer accepts it.

All comparisons are paired: two methods run on the same problems, so per-problem
correctness and cost are compared problem by problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from cope.results.intervals import wilson_interval  # noqa: F401 (analysis' users import it here)


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


def bootstrap_mean_interval(values: Sequence[float], *, resamples: int = 10_000,
                            confidence: float = 0.95, seed: int = 0) -> BootstrapResult:
    """Percentile interval for the mean of one run's per-problem values (accuracy, cost)."""
    x = np.asarray(values, float)
    if x.size == 0:
        raise ValueError("no values")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return BootstrapResult(float(x.mean()), *map(float, np.percentile(means, [tail, 100 - tail])))


@dataclass(frozen=True)
class Pairing:
    """Two runs' records on the problems both finished, in one order."""

    ids: list[str]
    correct_a: np.ndarray
    correct_b: np.ndarray
    cost_a: np.ndarray
    cost_b: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)


def pair_runs(problems_a: Sequence[dict], problems_b: Sequence[dict]) -> Pairing:
    """Align two runs on the problem ids they share (a partial run is compared on what it
    finished; the n says how many)."""
    by_id_b = {p["id"]: p for p in problems_b}
    shared = [p for p in problems_a if p["id"] in by_id_b]
    other = [by_id_b[p["id"]] for p in shared]
    return Pairing(
        ids=[p["id"] for p in shared],
        correct_a=np.array([bool(p["correct"]) for p in shared], dtype=bool),
        correct_b=np.array([bool(p["correct"]) for p in other], dtype=bool),
        cost_a=np.array([p["cost_usd"] for p in shared], float),
        cost_b=np.array([p["cost_usd"] for p in other], float),
    )


def compare(problems_a: Sequence[dict], problems_b: Sequence[dict], *, resamples: int = 10_000,
            confidence: float = 0.95, seed: int = 0) -> dict:
    """Everything a paired claim about A against B needs, on their shared problems: n, both
    accuracies with Wilson intervals, McNemar's exact test, and bootstrap intervals for the
    accuracy difference and the cost ratio (A / B; absent when B cost nothing)."""
    pairing = pair_runs(problems_a, problems_b)
    n = pairing.n
    if n == 0:
        return {"n": 0}
    k_a, k_b = int(pairing.correct_a.sum()), int(pairing.correct_b.sum())
    test = mcnemar_exact(pairing.correct_a, pairing.correct_b)
    boot = paired_bootstrap(pairing.correct_a, pairing.correct_b, pairing.cost_a, pairing.cost_b,
                            resamples=resamples, confidence=confidence, seed=seed)
    out = {
        "n": n,
        "accuracy_a": k_a / n, "accuracy_a_ci": wilson_interval(k_a, n, confidence),
        "accuracy_b": k_b / n, "accuracy_b_ci": wilson_interval(k_b, n, confidence),
        "cost_a_per_million": float(pairing.cost_a.mean() * 1e6),
        "cost_b_per_million": float(pairing.cost_b.mean() * 1e6),
        "only_a": test.only_a, "only_b": test.only_b, "p_value": test.p_value,
        "accuracy_difference": asdict(boot["accuracy_difference"]),
    }
    if "cost_ratio" in boot:
        out["cost_ratio"] = asdict(boot["cost_ratio"])
    return out
