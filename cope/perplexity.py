"""Perplexity confidence for open-ended answers (the paper's rule for MT-Bench).

A candidate's perplexity is exp(mean negative log-likelihood of its completion tokens), the
logprobs being those the backend reports for the sampled tokens under the model's own
distribution. It is at least 1, and 1 means every token was certain. A stage answers with
its lowest-perplexity candidate and escalates when that perplexity is above the stage's
`max_perplexity`. Its recorded confidence is 1 / perplexity, the geometric mean of the
token probabilities, which lies in (0, 1] like the other rules' confidences.

    >>> round(perplexity([-0.5, -1.5]), 4)  # exp(1.0)
    2.7183
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def mean_nll(logprobs: Sequence[float] | None) -> float | None:
    """Mean negative log-likelihood per token; None without tokens to score."""
    if not logprobs:
        return None
    return -sum(logprobs) / len(logprobs)


def perplexity(logprobs: Sequence[float] | None) -> float | None:
    """exp(mean NLL) of a completion's tokens; None without tokens to score."""
    nll = mean_nll(logprobs)
    return None if nll is None else math.exp(nll)


def lowest(perplexities: Sequence[float | None], rng: random.Random | None = None) -> int | None:
    """Index of the candidate with the lowest perplexity (None scores abstain); exact ties,
    which repeated greedy samples give, are broken by `rng`."""
    scored = [(value, i) for i, value in enumerate(perplexities) if value is not None]
    if not scored:
        return None
    best = min(value for value, _ in scored)
    tied = [i for value, i in scored if value == best]
    return rng.choice(tied) if rng is not None and len(tied) > 1 else tied[0]


def within(value: float | None, max_perplexity: float | None) -> bool:
    """Whether a stage may answer: its lowest perplexity is at most the threshold (it
    escalates when above, as the paper puts it); null threshold: always."""
    if max_perplexity is None:
        return True
    return value is not None and value <= max_perplexity
