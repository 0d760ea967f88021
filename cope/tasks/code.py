"""Code answers: extraction from a response, the visible tests, and judging.

A stage's confidence is the paper's test filter (cope/confidence/test_filter.py), which
runs every candidate on the problem's visible tests in the sandbox. The final answer is
judged on the hidden tests.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1'
"""

from __future__ import annotations

import ast
import asyncio
import re
from functools import cached_property

from cope.samples import Message
from cope.sandbox import Sandbox, TestJob, TestResult, default_sandbox
from cope.tasks.base import Plan, Problem, Task, render_plans

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
_CODE_START = re.compile(r"^(def |class |import |from |async def |@)", re.MULTILINE)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def _bare_code(text: str) -> str | None:
    """Code written without a fence: from the first definition or import, as many lines as
    still parse (trailing prose is dropped)."""
    start = _CODE_START.search(text)
    if start is None:
        return None
    lines = text[start.start():].rstrip().splitlines()
    while lines:
        code = "\n".join(lines).rstrip()
        if _parses(code):
            return code
        lines.pop()
    return None


def extract_code(text: str, entry_point: str | None = None) -> str | None:
    """The solution in a response, or None (an abstention).

    Fenced blocks first: among the Python ones (or untagged), the first that defines
    `entry_point` (when known), else the first that defines any function, else the first.
    Without a fence, bare code from its first definition or import. An unclosed fence (a
    response cut by the token budget) counts up to the end of the text.
    """
    if not text:
        return None
    blocks = [body.strip("\n") for tag, body in _FENCE.findall(text)
              if tag.lower() in _PYTHON_TAGS and body.strip()]
    if blocks:
        if entry_point:
            for block in blocks:
                if _defines(block, entry_point):
                    return block
        for block in blocks:
            if re.search(r"^\s*(?:async\s+)?def\s", block, re.MULTILINE):
                return block
        return blocks[0]
    return _bare_code(text)


# Prompts: the paper's planner and executor instructions for code, in our words.
GOAL_PLANNER = (
    "You are a programming teacher. In one sentence, state the goal of the following coding "
    "problem: what the function must compute. Do not write any code."
)
GUIDELINE_PLANNER = (
    "You are a skilled programming coach. Explain how to solve the following coding problem, "
    "focusing on the strategy and the key ideas, in one or two sentences. Do not write any "
    "code. Return only the guidelines as plain text."
)
EXECUTOR = (
    "You are an expert Python programmer. Solve the following coding problem efficiently and "
    "clearly. Write the complete solution in one ```python code block, with the function "
    "named and called exactly as in the problem, and the imports it needs. Do not add tests "
    "or example usage."
)


class CodeTask(Task):
    """A Python benchmark whose answers are programs, checked by running tests.

    Problems carry their tests in `meta`: `visible` (the stage filter), `hidden` (the
    judge), `setup` (MBPP's test set-up code) and `entry_point` (the function's name).
    """

    family = "code"
    own_rule = "test_filter"

    @cached_property
    def sandbox(self) -> Sandbox:
        return default_sandbox()

    def runs_programs(self, styles: set[str]) -> bool:
        return True

    @property
    def timeout(self) -> float:
        return float(getattr(self.cfg, "timeout_s", 10.0) or 10.0)

    def plan_messages(self, problem: Problem, kind: str) -> tuple[Message, ...]:
        instruction = GOAL_PLANNER if kind == "goal" else GUIDELINE_PLANNER
        return (("system", instruction), ("user", f"Problem:\n{problem.question}"))

    def execute_messages(self, problem: Problem, plans: list[Plan]) -> tuple[Message, ...]:
        user = f"Problem:\n{problem.question}"
        if plans:
            lines = render_plans(plans)
            user += f"\n\nA plan to follow:\n{lines}"
        return (("system", EXECUTOR), ("user", user))

    def extract(self, problem: Problem, text: str) -> str | None:
        return extract_code(text, problem.meta.get("entry_point"))

    def program(self, problem: Problem, code: str) -> str:
        """What runs: the candidate as written (HumanEval prepends its prompt, see there)."""
        return code

    def _jobs(self, problem: Problem, codes: list[str], tests: list[str]) -> list[TestJob]:
        setup = problem.meta.get("setup", "")
        return [TestJob(self.program(problem, code), tuple(tests), setup) for code in codes]

    def run_visible_tests(self, problem: Problem, codes: list[str]) -> list[TestResult]:
        """Each program on the problem's visible tests (the test_filter rule's evidence)."""
        return self.sandbox.run_tests_batch(
            self._jobs(problem, codes, problem.meta["visible"]), self.timeout)

    async def is_correct_async(self, problem: Problem, answer: str | None) -> bool:
        return await asyncio.to_thread(self.is_correct, problem, answer)

    def is_correct(self, problem: Problem, answer: str | None) -> bool:
        if answer is None:
            return False
        job = self._jobs(problem, [answer], problem.meta["hidden"])[0]
        return self.sandbox.run_tests(job.program, job.tests, self.timeout, job.setup).passed
