"""consensus: the share of the stage's samples that give the top answer (the paper's rule)."""

from __future__ import annotations

from cope.confidence.base import Decision, Rule, StageSamples


class Consensus(Rule):
    name = "consensus"

    async def decide(self, samples: StageSamples) -> Decision:
        return Decision(await samples.majority())


RULE = Consensus()
