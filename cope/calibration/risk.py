"""Finite-sample, distribution-free risk control for a searched set of configurations.

The guarantee is Learn-then-Test's (Angelopoulos, Bates et al., 2021): each configuration's
null hypothesis "its risk exceeds alpha" gets a valid p-value, and a family-wise error
controlling procedure over the searched set returns the configurations whose null it
rejects; with probability at least 1 - delta over the draw of the dev problems, every
returned configuration has risk at most alpha on problems exchangeable with them.

- p-values: the betting (hedged capital) test of Waudby-Smith and Ramdas (2023) for the mean
  of a loss in [0, 1]. Its capital grows when losses fall below alpha; by Ville's
  inequality 1 / (its maximum) is a p-value. It adapts to the loss's variance, which matters
  for paired losses that are mostly one half.
- the search: Pareto Testing (Laufer-Goldshtein et al., 2023). The dev problems are split in
  two by a hash of their ids. On the first part each configuration's p-value is estimated,
  and those on the Pareto front of (that p-value, objective) are ordered from the surest
  to the least sure; on the second part they are tested in that order, each at level delta,
  and testing stops at the first null not rejected (fixed sequence testing: no correction
  for the size of the search is needed). Ordering by the p-value rather than the mean loss
  puts a configuration whose loss hardly varies (one answering as large alone does) ahead
  of a slightly better but erratic one, which would stop the testing early.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def betting_pvalues(losses: np.ndarray, alpha: float, delta: float) -> np.ndarray:
    """p-values of H0: E[loss] >= alpha, one per row of losses in [0, 1], each row in a fixed
    order (the rows are configurations, the columns problems)."""
    losses = np.atleast_2d(np.asarray(losses, dtype=float))
    if not 0 < alpha < 1:
        return np.full(len(losses), 1.0 if alpha <= 0 else 0.0)
    n = losses.shape[1]
    capital, best = np.ones(len(losses)), np.ones(len(losses))
    mean, var, seen = np.full(len(losses), 0.5), np.full(len(losses), 0.25), 1
    total, squares = mean.copy(), var.copy()  # the priors of the running estimates
    for x in losses.T:
        # bets are predictable (made before x is seen) and keep every factor above one half
        bet = np.minimum(np.sqrt(2 * math.log(1 / delta) / (n * var)), 0.5 / (1 - alpha))
        capital *= 1 - bet * (x - alpha)
        best = np.maximum(best, capital)
        total += x
        squares += (x - mean) ** 2
        seen += 1
        mean, var = total / seen, np.maximum(squares / seen, 1e-6)
    return np.minimum(1.0, 1 / best)


def betting_pvalue(losses: Sequence[float], alpha: float, delta: float) -> float:
    """p-value of H0: E[loss] >= alpha, for losses in [0, 1] in a fixed order."""
    return float(betting_pvalues(np.asarray(losses, dtype=float)[None, :], alpha, delta)[0])


def betting_upper_bound(losses: Sequence[float], delta: float, tol: float = 1e-4) -> float:
    """The smallest alpha whose null the betting test rejects at level delta: a 1 - delta
    upper confidence bound on the mean loss of one fixed configuration."""
    lo, hi = float(np.mean(losses)) if len(losses) else 0.0, 1.0
    if betting_pvalue(losses, hi - tol, delta) > delta:
        return 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if betting_pvalue(losses, mid, delta) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def fewest_problems(loss: float, alpha: float, delta: float, most: int = 100_000) -> int | None:
    """The fewest testing problems on which a configuration whose every loss is `loss` is
    certified (its null rejected at level delta); None if `loss` is not below alpha or even
    `most` problems would not do. Real losses vary, which only raises the count: it is the
    least a calibration needs."""
    if loss >= alpha:
        return None

    def certified(n: int) -> bool:
        return betting_pvalue([loss] * n, alpha, delta) <= delta

    low, high = 0, 1
    while not certified(high):  # the capital only grows with n for a constant loss
        if high == most:
            return None
        low, high = high, min(high * 2, most)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if certified(mid) else (mid, high)
    return high


def clopper_pearson(successes: int, n: int, delta: float) -> tuple[float, float]:
    """The exact two-sided 1 - delta interval of a binomial proportion."""
    lower = 0.0 if successes == 0 else stats.beta.ppf(delta / 2, successes, n - successes + 1)
    upper = 1.0 if successes == n else stats.beta.ppf(1 - delta / 2, successes + 1, n - successes)
    return float(lower), float(upper)


def split(ids: Sequence[str], fraction: float = 0.5, salt: str = "cope-calibrate"
          ) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the search part and the testing part of the dev problems, by a hash of
    each id: fixed before any outcome is seen, and the same for every method."""
    ranks = [hashlib.sha256(f"{salt}|{i}".encode()).hexdigest() for i in ids]
    order = np.argsort(ranks, kind="stable")
    cut = int(round(len(ids) * fraction))
    return np.sort(order[:cut]), order[cut:]  # the testing part in hash order: the bets' order


def pareto_front(doubt: np.ndarray, objective: np.ndarray) -> np.ndarray:
    """Indices not dominated in (lower doubt, lower objective), from the least doubtful on;
    the doubt is an estimate of each configuration's p-value or risk."""
    order = np.lexsort((objective, doubt))
    front, best = [], math.inf
    for i in order:
        if objective[i] < best:
            front.append(i)
            best = objective[i]
    return np.array(front, dtype=int)


def certification_order(losses: np.ndarray, objective: np.ndarray, alpha: float,
                        delta: float) -> np.ndarray:
    """The configurations to test, in order, from their losses (rows) and mean objective on
    the search part alone: the Pareto front of (p-value there, objective), surest first. The
    p-value weighs how much a loss varies as well as its mean."""
    return pareto_front(betting_pvalues(losses, alpha, delta), objective)


def fixed_sequence(order: Sequence[int], losses: np.ndarray, alpha: float, delta: float
                   ) -> tuple[list[int], dict[int, float]]:
    """Test configurations in `order` on their losses (rows), each at level delta, until the
    first null that stands; the rejected ones and every p-value computed."""
    valid, pvalues = [], {}
    for i in order:
        pvalues[int(i)] = betting_pvalue(losses[i], alpha, delta)
        if pvalues[int(i)] > delta:
            break
        valid.append(int(i))
    return valid, pvalues
