"""Math answers: extraction, equivalence, grading and the majority vote.

Equivalence is math-verify's (LaTeX and plain expressions parsed to SymPy and compared);
this module only finds the answer in a response and groups equivalent answers.

    >>> grade("... so the final answer is $\\boxed{\\frac{1}{2}}$.", "0.5")
    True
"""

from __future__ import annotations

import random
import re
import threading
from decimal import Decimal
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from cope import sandbox
from cope.samples import Message
from cope.tasks.base import Plan, Problem, Task, Vote, render_plans
from cope.tasks.program_of_thought import (
    ProgramError,
    extract_program,
    printed_answer,
    run_program,
)

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_FINAL_ANSWER = re.compile(
    r"final answer\s*(?:is|:)\s*:?\s*(?P<answer>.+?)(?:\.\s*$|\.\s+I hope|\n|$)",
    re.IGNORECASE | re.MULTILINE,
)
_HASHES = re.compile(r"####\s*(?P<answer>[^\n]+)")
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")
# what a model writes when it copies the prompt's "\boxed{answer}" literally
_PLACEHOLDERS = {"answer", "your answer", "final answer", "[answer]", "..."}
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), nested braces allowed.

    Also reads the brace-less form `\\boxed 5`. None when there is no complete box.
    """
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    while start >= 0:
        cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        i = start + len(cmd)
        if i < len(text) and text[i] == " ":
            match = re.match(r" +([^\s$]+)", text[i:])
            if match:
                return match.group(1)
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        # an unclosed or malformed box: look for an earlier one
        start = max(text.rfind(cmd, 0, start) for cmd in _BOX_COMMANDS)
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().strip("$").strip()
    answer = answer.rstrip(".,;:").strip()
    if _THOUSANDS.match(answer):
        answer = answer.replace(",", "")
    if answer.lower() in _PLACEHOLDERS:
        return ""  # a copied template is no answer
    return answer


def extract_answer(text: str, last_number_fallback: bool = False) -> str | None:
    """The final answer of a response, or None (an abstention).

    Order: the last \\boxed{...}; "final answer is X"; "#### X"; then, if allowed (tasks with
    numeric answers such as GSM8K), the last number in the text.
    """
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return _clean(boxed) or None
    matches = list(_FINAL_ANSWER.finditer(text))
    if matches:
        inner = last_boxed(matches[-1].group("answer"))
        cleaned = _clean(inner if inner is not None else matches[-1].group("answer"))
        if cleaned:
            return cleaned
    hashes = list(_HASHES.finditer(text))
    if hashes:
        cleaned = _clean(hashes[-1].group("answer"))
        if cleaned:
            return cleaned
    if last_number_fallback:
        numbers = _NUMBER.findall(text)
        if numbers:
            return _clean(numbers[-1])
    return None


def _timeout() -> int | None:
    # math-verify's timeout uses SIGALRM, which only the main thread may set
    return 5 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=65536)
def _parsed(answer: str) -> tuple:
    """math-verify's parse of an extracted answer (as if it had been boxed)."""
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    try:
        result = parse(f"\\boxed{{{answer}}}", extraction_config=config, parsing_timeout=_timeout())
        if not result:
            result = parse(answer, extraction_config=config, parsing_timeout=_timeout())
    except Exception:  # a parser failure means "not comparable", never a crashed run
        return ()
    return tuple(result)


def _normalised(answer: str) -> str:
    return re.sub(r"\s+", "", answer).lower()


_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def _plain_numbers_differ(a: str, b: str) -> bool:
    """True when both answers are plain decimal numbers that math-verify cannot find equal:
    it compares such numbers exactly, or (floats) rounded to 6 decimals, so numbers more than
    1e-5 apart are never equivalent. Spares the parse (milliseconds) of most GSM8K answers."""
    if not (_PLAIN_NUMBER.fullmatch(a) and _PLAIN_NUMBER.fullmatch(b)):
        return False
    return abs(Decimal(a) - Decimal(b)) > Decimal("1e-5")


@lru_cache(maxsize=65536)
def equivalent(answer: str | None, reference: str | None) -> bool:
    """Whether two extracted answers are mathematically equivalent (math-verify). Remembered:
    votes and judgements compare the same answers again and again (every structure a
    calibration surveys), and a sympy comparison can take a tenth of a second."""
    if answer is None or reference is None:
        return False
    if _normalised(answer) == _normalised(reference):
        return True
    if _plain_numbers_differ(answer, reference):
        return False
    gold, target = _parsed(reference), _parsed(answer)
    if not gold or not target:
        return False
    try:
        return bool(verify(list(gold), list(target), timeout_seconds=_timeout()))
    except Exception:
        return False


def grade(response: str, gold: str) -> bool:
    """Whether a model's full response answers a problem whose reference answer is `gold`."""
    return equivalent(extract_answer(response, last_number_fallback=False), gold)


def majority_vote(answers: list[str | None], rng: random.Random | None = None) -> Vote:
    """Group equivalent answers; the largest group wins.

    Confidence is the winning group's size over all samples, abstentions included, as in
    the paper: votes(top answer) / n. The paper does not say how ties break: with `rng`, a
    tied group is drawn at random; without, the group seen first wins.
    """
    groups: list[tuple[str, list[int]]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for representative, members in groups:
            if equivalent(answer, representative):
                members.append(i)
                break
        else:
            groups.append((answer, [i]))
    if not groups:
        return Vote(answer=None, confidence=0.0, support=[], answers=list(answers))
    top = max(len(members) for _, members in groups)
    tied = [group for group in groups if len(group[1]) == top]
    best, support = rng.choice(tied) if rng is not None and len(tied) > 1 else tied[0]
    return Vote(
        answer=best, confidence=top / len(answers), support=support, answers=list(answers),
        tied=len(tied),
    )


# Prompts: the paper's planner and executor instructions, in our words.
GOAL_PLANNER = (
    "You are a math teacher. In one sentence, state the goal of the following problem: what "
    "must be found. Do not solve it and do not compute anything."
)
GUIDELINE_PLANNER = (
    "You are a skilled math coach. Explain how to solve the following problem, focusing on "
    "the strategy and the key ideas, in one or two sentences. Do not carry out the "
    "calculations and do not state the answer. Return only the guidelines as plain text."
)
EXECUTOR = (
    "Solve the following math problem efficiently and clearly. Reason step by step, showing "
    "each calculation, then end your response with: Therefore, the final answer is: "
    "$\\boxed{answer}$. where answer is only the final number or expression."
)
PROGRAM_EXECUTOR = (
    "Solve the following math problem by writing a Python program. The program must compute "
    "the answer and print only the final number or expression, on the last line of its "
    "output. Return only the program, in one ```python code block."
)


class MathTask(Task):
    """A math benchmark whose answers are compared by mathematical equivalence."""

    family = "math"
    last_number_fallback = False
    styles = ("cot", "pot", "mixed")

    def plan_messages(self, problem: Problem, kind: str) -> tuple[Message, ...]:
        instruction = GOAL_PLANNER if kind == "goal" else GUIDELINE_PLANNER
        return (("system", instruction), ("user", f"Problem:\n{problem.question}"))

    def execute_messages(self, problem: Problem, plans: list[Plan]) -> tuple[Message, ...]:
        return (("system", EXECUTOR), ("user", self._problem_with_plans(problem, plans)))

    def program_messages(self, problem: Problem, plans: list[Plan]) -> tuple[Message, ...]:
        return (("system", PROGRAM_EXECUTOR), ("user", self._problem_with_plans(problem, plans)))

    @staticmethod
    def _problem_with_plans(problem: Problem, plans: list[Plan]) -> str:
        user = f"Problem:\n{problem.question}"
        if plans:
            lines = render_plans(plans)
            user += f"\n\nA plan to follow:\n{lines}"
        return user

    def extract(self, problem: Problem | None, text: str) -> str | None:
        return extract_answer(text, last_number_fallback=self.last_number_fallback)

    def program_isolation(self) -> str | None:
        return sandbox.default_sandbox().isolation.layers

    def program_answer(self, problem: Problem, text: str, timeout: float) -> str | None:
        """The last line the response's program printed, read like a written answer (a box or
        "final answer is" inside it wins; else the line itself)."""
        code = extract_program(text)
        if code is None:
            return None
        try:
            line = printed_answer(run_program(code, timeout))
        except ProgramError:
            return None
        return self.extract(problem, line) or _clean(line) or None

    def vote(self, problem: Problem, answers: list[str | None],
             rng: random.Random | None = None) -> Vote:
        return majority_vote(answers, rng)

    def is_correct(self, problem: Problem, answer: str | None) -> bool:
        return equivalent(answer, problem.gold)
