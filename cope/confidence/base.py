"""What every confidence rule is: the samples it reads, the decision it returns, its checks."""

from __future__ import annotations

import asyncio
import functools
import importlib
import pkgutil
import random
from dataclasses import dataclass, replace
from typing import Any

from cope.errors import ConfigError, unknown_name
from cope.samples import Generation
from cope.tasks.base import Problem, Task, Vote


@dataclass
class StageSamples:
    """One stage's executions on one problem, as a rule reads them."""

    problem: Problem
    stage: Any  # cope.engine.Stage
    task: Task
    generations: list[Generation]
    rng: random.Random  # seeded per run, problem and stage: breaks ties
    scorer: Any = None  # the stage's scorer (confidence=scorer)

    @property
    def texts(self) -> list[str]:
        return [g.text for g in self.generations]

    @property
    def styles(self) -> list[str]:
        return [style for style, _ in self.stage.sample_styles()]

    async def majority(self) -> Vote:
        """The task's vote over per-sample answers: a written answer is read from the text,
        a program's by running it (in worker threads: programs take time)."""
        problem, task = self.problem, self.task
        if self.stage.style == "cot":  # the common case, kept short: it runs for every stage
            return task.vote(problem, [task.extract(problem, g.text) for g in self.generations],
                             self.rng)

        def answer(style: str, text: str) -> str | None:
            if style == "pot":
                return task.program_answer(problem, text, self.stage.program_timeout_s)
            return task.extract(problem, text)

        styles = self.styles
        answers = await asyncio.gather(*(asyncio.to_thread(answer, style, text)
                                         for style, text in zip(styles, self.texts)))
        isolation = task.program_isolation()
        return replace(task.vote(problem, list(answers), self.rng),
                       sandbox=[isolation if style == "pot" else None for style in styles])


@dataclass
class Decision:
    vote: Vote
    perplexities: list[float | None] | None = None  # confidence=perplexity: per sample


def passes(confidence: float, threshold: float, op: str) -> bool:
    """gt: confidence > threshold; ge: confidence >= threshold."""
    if op not in ("gt", "ge"):
        raise ValueError(f"threshold_op must be gt or ge, not {op!r}")
    return confidence > threshold if op == "gt" else confidence >= threshold


class Rule:
    """One way of turning a stage's samples into a vote and of deciding whether the stage
    answers. Subclasses set `name`, implement `decide`, and add their checks."""

    name: str = ""
    wants_logprobs = False  # whether its samples must come with per-token logprobs
    styles: tuple[str, ...] | None = None  # the executor styles it reads; None: any
    votes_on_answers = True  # whether it compares samples' answers (open-ended ones cannot be)
    needs_scorer = False  # whether the stage needs a trained scorer (StageSamples.scorer)

    def check(self, stage: Any, where: str, task_class: type[Task]) -> None:
        """Refuse a stage this rule cannot decide, before the first generation."""
        if self.styles is not None and stage.style not in self.styles:
            raise ConfigError(f"{where}: confidence={stage.confidence} reads "
                              f"{' or '.join(self.styles)} samples; set style={self.styles[0]}.")
        if self.votes_on_answers and stage.votes > 1 and not task_class.votable:
            raise ConfigError(
                f"{where}: task '{task_class.name}' has open-ended answers, which cannot be "
                f"voted on ({stage.votes} votes, confidence={stage.confidence}). Use "
                "confidence=perplexity, or votes=1.")

    async def decide(self, samples: StageSamples) -> Decision:
        raise NotImplementedError

    def accepts(self, decision: Decision, stage: Any, threshold_op: str) -> bool:
        """Whether a stage that is not the last answers: its confidence passes the threshold
        (a stage without one always answers)."""
        if stage.threshold is None:
            return True
        vote = decision.vote
        return vote.answer is not None and passes(vote.confidence, stage.threshold,
                                                     threshold_op)


_NOT_RULES = {"base"}


@functools.cache
def rule_names() -> tuple[str, ...]:
    """Every rule: each module of this package but this one names one."""
    package = importlib.import_module("cope.confidence")
    return tuple(sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                        if m.name not in _NOT_RULES))


@functools.cache
def load_rule(name: str) -> Rule:
    """The rule `confidence: name` chooses: the RULE of module cope.confidence.<name>."""
    if name not in rule_names():
        raise ConfigError(f"confidence='{name}': "
                          + unknown_name("confidence rule", name, rule_names()))
    return importlib.import_module(f"cope.confidence.{name}").RULE
