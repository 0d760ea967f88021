"""scorer (FrugalGPT): a trained scorer's probability that the stage's answer is right.

The answer is the one the task's own rule gives (the majority, or a program that passes the
visible tests); the scorer judges the first response behind it.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Protocol

from cope.confidence.base import Decision, Rule, StageSamples, load_rule
from cope.errors import ConfigError


class Scorer(Protocol):
    """A learned judge of one answer: the probability that it is right."""

    def probability(self, question: str, response: str) -> float: ...


def scored_response(texts: list[str], support: list[int]) -> str:
    """The response a scorer judges (FrugalGPT's g(q, a)): the first one behind the answer."""
    return texts[support[0] if support else 0]


class ScorerRule(Rule):
    name = "scorer"
    styles = ("cot",)
    needs_scorer = True

    def check(self, stage, where, task_class) -> None:
        super().check(stage, where, task_class)
        if not stage.scorer:
            raise ConfigError(f"{where}: confidence=scorer needs {where}.scorer, a scorer file "
                              "(python -m cope.baselines.frugalgpt train writes one).")

    async def decide(self, samples: StageSamples) -> Decision:
        own = load_rule(samples.task.own_rule)
        vote = (await own.decide(samples)).vote
        response = scored_response(samples.texts, vote.support)
        probability = await asyncio.to_thread(samples.scorer.probability,
                                              samples.problem.question, response)
        return Decision(replace(vote, confidence=float(probability)))


RULE = ScorerRule()
