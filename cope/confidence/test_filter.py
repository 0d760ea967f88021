"""test_filter: a program answers when it passes the task's visible tests (COPE on code).

Every candidate runs on the visible tests in the sandbox; when at least one passes them all,
the stage answers with one of those, drawn at random (confidence 1). When none does, the
confidence is 0 and the stage escalates; the last stage still answers with a candidate.
"""

from __future__ import annotations

import asyncio

from cope.confidence.base import Decision, Rule, StageSamples
from cope.errors import ConfigError
from cope.tasks.base import Vote


def filter_by_tests(task, problem, texts: list[str], rng) -> Vote:
    codes = [task.extract(problem, text) for text in texts]
    written = [i for i, code in enumerate(codes) if code is not None]
    unique = list(dict.fromkeys(codes[i] for i in written))  # greedy samples repeat
    results = dict(zip(unique, task.run_visible_tests(problem, unique)))
    ran = [None if code is None else results[code].isolation for code in codes]
    passing = [i for i in written if results[codes[i]].passed]
    if passing:
        return Vote(answer=codes[rng.choice(passing)], confidence=1.0, support=passing,
                       answers=codes, sandbox=ran)
    if not written:
        return Vote(answer=None, confidence=0.0, support=[], answers=codes, sandbox=ran)
    return Vote(answer=codes[rng.choice(written)], confidence=0.0, support=[],
                   answers=codes, sandbox=ran)


class TestFilter(Rule):
    name = "test_filter"
    styles = ("cot",)
    votes_on_answers = False

    def check(self, stage, where, task_class) -> None:
        super().check(stage, where, task_class)
        if not hasattr(task_class, "run_visible_tests"):
            raise ConfigError(f"{where}: confidence=test_filter runs programs on a task's "
                              f"visible tests; task '{task_class.name}' has none.")

    async def decide(self, samples: StageSamples) -> Decision:
        # tests take time: off the event loop
        return Decision(await asyncio.to_thread(filter_by_tests, samples.task, samples.problem,
                                                samples.texts, samples.rng))


RULE = TestFilter()
