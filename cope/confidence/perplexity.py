"""perplexity: confidence for open-ended answers (the paper's rule for MT-Bench).

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

from cope.confidence.base import Decision, Rule, StageSamples
from cope.errors import BackendError, ConfigError
from cope.tasks.base import Vote


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


class LowestPerplexity(Rule):
    """The candidate with the lowest perplexity answers. A failed or empty sample abstains; a
    sample that came back without logprobs is an error, not an abstention."""

    name = "perplexity"
    wants_logprobs = True
    styles = ("cot",)
    votes_on_answers = False

    def check(self, stage, where, task_class) -> None:
        super().check(stage, where, task_class)
        limit = stage.max_perplexity
        if limit is not None and limit < 1:
            raise ConfigError(
                f"{where}.max_perplexity={limit}: a perplexity, exp(mean negative log-likelihood "
                "per token), is at least 1, so this stage would never answer. Use a value above "
                "1 (e.g. 2.0), or null to always answer.")

    async def decide(self, samples: StageSamples) -> Decision:
        scores: list[float | None] = []
        answers: list[str | None] = []
        for generation in samples.generations:
            completion = generation.completion
            text = completion.text.strip()
            if completion.failed or not text:
                scores.append(None)
                answers.append(None)
                continue
            if completion.token_logprobs is None:
                raise BackendError(
                    f"method.stages.{samples.stage.name}: model '{generation.request.model}' "
                    "returned no logprobs, which confidence=perplexity needs. Serve it with a "
                    "backend that reports them (llamacpp, openai with logprobs, sglang, "
                    "transformers).")
            scores.append(perplexity(completion.token_logprobs))
            answers.append(text)
        chosen = lowest(scores, samples.rng)
        if chosen is None:
            vote = Vote(answer=None, confidence=0.0, support=[], answers=answers)
        else:
            vote = Vote(answer=answers[chosen], confidence=1.0 / scores[chosen],
                              support=[chosen], answers=answers)
        return Decision(vote, perplexities=scores)

    def accepts(self, decision: Decision, stage, threshold_op: str) -> bool:
        vote = decision.vote
        if vote.answer is None:
            return False
        return within(decision.perplexities[vote.support[0]], stage.max_perplexity)


RULE = LowestPerplexity()
