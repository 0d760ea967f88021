"""The task contract: a dataset, its prompts, answer extraction and a judge.

How a stage's answers become its confidence is a rule of cope.confidence; a task says how
its answers compare (`vote`) and which rule `consensus` means for it (`own_rule`).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from cope.errors import ConfigError, DataError
from cope.samples import Message


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    gold: str
    index: int = 0  # position in the selection: records are ordered by it
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Plan:
    kind: str  # goal or guideline
    text: str
    author: str  # the role that wrote it (small, large, ...)
    stage: str = ""  # the stage that wrote it
    slot: int = 0  # the planner's sample index


PLAN_LABELS = {"goal": "Goal", "guideline": "Guideline"}


def render_plans(plans: list[Plan]) -> str:
    """Plans as an executor reads them: one labelled line each."""
    return "\n".join(f"{PLAN_LABELS.get(p.kind, p.kind)}: {p.text.strip()}" for p in plans)


@dataclass
class Vote:
    """What a stage's samples say: its answer, how confident it is, which samples back it."""

    answer: str | None  # None when every sample abstained
    confidence: float  # in [0, 1]
    support: list[int]  # indices of the samples that back the answer
    answers: list[str | None]  # per-sample extracted answers (None: abstained)
    tied: int = 1  # how many answers shared the top vote count
    # per sample: the isolation its program ran under (cope.sandbox layers), None when no
    # program ran; None for a stage that runs no programs
    sandbox: list[str | None] | None = None


class Task(ABC):
    """One benchmark: how to load it, prompt for it, read answers and judge them."""

    name: str = "task"
    family: str = "math"
    # whether samples give answers that can be voted on (consensus, agreement); open-ended
    # responses cannot, and their stages use confidence=perplexity (or a single sample)
    votable: bool = True
    # the confidence rule that `consensus` names for this task (cope.confidence.RULES)
    own_rule: str = "consensus"

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    @abstractmethod
    def load(self) -> list[Problem]:
        """Every problem of the configured source and split, in dataset order."""

    @abstractmethod
    def plan_messages(self, problem: Problem, kind: str) -> tuple[Message, ...]:
        """The planner's prompt for a plan of this kind (goal or guideline)."""

    @abstractmethod
    def execute_messages(self, problem: Problem, plans: list[Plan]) -> tuple[Message, ...]:
        """The executor's prompt, conditioned on the given plans (possibly none)."""

    @abstractmethod
    def extract(self, problem: Problem, text: str) -> str | None:
        """The answer of one executor response, or None (an abstention)."""

    @abstractmethod
    def is_correct(self, problem: Problem, answer: str | None) -> bool | None:
        """Judge a final answer against the problem's reference; None: this task's answers
        are not judged by correctness (open-ended answers are judged pairwise)."""

    async def is_correct_async(self, problem: Problem, answer: str | None) -> bool | None:
        """`is_correct` as the runner calls it; a task whose judging blocks (code tasks run
        the hidden tests) moves it off the event loop."""
        return self.is_correct(problem, answer)

    def solver(self, method):
        """What solves one problem: the method itself, or a task's loop around it (an
        agent task plays an episode with the method choosing each action)."""
        return method

    def metrics(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Metrics of this task family beyond accuracy and cost, from the problem records."""
        return {}

    def details(self) -> dict[str, Any]:
        """How this task judges, for metrics.json (e.g. which tests a code task runs)."""
        return {}

    def runs_programs(self, styles: set[str]) -> bool:
        """Whether a method whose stages use `styles` runs model-written programs (then the
        sandbox must be available before the first generation)."""
        return bool(styles & {"pot", "mixed"})

    def program_isolation(self) -> str | None:
        """The sandbox layers that program-of-thought samples run under."""
        return None

    # Executor styles beyond the task's own prompt ("cot"): a task that supports program-of-
    # thought samples ("pot", and "mixed" CoT + PoT) lists them and implements the hooks below.
    styles: tuple[str, ...] = ("cot",)

    def program_messages(self, problem: Problem, plans: list[Plan]) -> tuple[Message, ...]:
        """The executor's prompt for a program that prints the answer (style pot)."""
        raise self._unsupported("program-of-thought prompts (style pot or mixed)")

    def program_answer(self, problem: Problem, text: str, timeout: float) -> str | None:
        """Run the program in a response and read its answer; None when it fails."""
        raise self._unsupported("program-of-thought answers (style pot or mixed)")

    def vote(self, problem: Problem, answers: list[str | None],
             rng: random.Random | None = None) -> Vote:
        """Combine per-sample answers (None: abstained) into a vote."""
        raise self._unsupported("voting over per-sample answers")

    def _unsupported(self, what: str) -> ConfigError:
        return ConfigError(f"Task '{self.name}' has no {what}: use style=cot with "
                           f"confidence={self.own_rule} or scorer for this task.")


def select(problems: list[Problem], ids: list[str] | None, offset: int, limit: int | None
           ) -> list[Problem]:
    """Choose problems by id list, then offset and limit; re-index in selection order."""
    chosen = problems
    if ids is not None:
        by_id = {p.id: p for p in problems}
        missing = [i for i in ids if str(i) not in by_id]
        if missing:
            sample = ", ".join(p.id for p in problems[:3])
            raise DataError(f"task.ids: no problems with ids {missing} (ids look like: {sample}).")
        chosen = [by_id[str(i)] for i in ids]
    chosen = chosen[offset:]
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        raise DataError(
            f"The selection is empty ({len(problems)} problems, offset={offset}, limit={limit})."
        )
    return [Problem(p.id, p.question, p.gold, i, p.meta) for i, p in enumerate(chosen)]
