"""agreement (MoT verify): the CoT majority and the PoT majority give the same answer
(confidence 1, answered with it), else confidence 0."""

from __future__ import annotations

from dataclasses import replace

from cope.confidence.base import Decision, Rule, StageSamples


class Agreement(Rule):
    name = "agreement"
    styles = ("mixed",)

    async def decide(self, samples: StageSamples) -> Decision:
        vote = await samples.majority()
        task, problem, rng = samples.task, samples.problem, samples.rng
        positions = {kind: [i for i, style in enumerate(samples.styles) if style == kind]
                     for kind in ("cot", "pot")}
        majorities = {kind: task.vote(problem, [vote.answers[i] for i in where], rng)
                      for kind, where in positions.items()}
        cot, pot = majorities["cot"], majorities["pot"]
        agree = (cot.answer is not None and pot.answer is not None
                 and task.vote(problem, [cot.answer, pot.answer]).confidence == 1.0)
        if not agree:
            return Decision(replace(vote, confidence=0.0))
        support = sorted([positions["cot"][j] for j in cot.support]
                         + [positions["pot"][j] for j in pot.support])
        return Decision(replace(vote, answer=cot.answer, confidence=1.0, support=support))


RULE = Agreement()
