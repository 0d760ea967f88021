"""Open-ended chat: MT-Bench (Zheng et al. 2023), two user turns per question.

Each turn runs through the method's whole cascade. Turn 2's prompt is a chat: turn 1's
question, the answer the cascade chose for it (as the assistant's message), then turn 2's
question. The stages' confidence for open-ended answers is the paper's: the candidate with
the lowest perplexity answers, and the stage escalates when that perplexity is above its
`max_perplexity` (cope/confidence/perplexity.py). A problem's record keeps both answers, the stage that
resolved each turn and the perplexities. Answers are judged afterwards, pairwise against
another run's answers, by `python -m cope.judge`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, Any

from cope.engine import ProblemResult
from cope.errors import ConfigError, DataError
from cope.generator import RetaggingGenerator
from cope.samples import Message
from cope.tasks.base import Plan, Problem, Task, Vote, render_plans
from cope.tasks.data_files import read_data_lines, require, resolve_source

if TYPE_CHECKING:
    from cope.engine import CascadeMethod, ProblemResult

# Prompts, in our words: the paper's planners rephrased for open-ended requests.
GOAL_PLANNER = (
    "You are an experienced writing and reasoning coach. In one sentence, state the goal of "
    "the user's latest request: what a good response must achieve. Do not answer the request "
    "yourself."
)
GUIDELINE_PLANNER = (
    "You are an experienced writing and reasoning coach. Explain how to respond well to the "
    "user's latest request, focusing on the approach and the key points a good response "
    "covers, in one or two sentences. Do not answer the request yourself. Return only the "
    "guidelines as plain text."
)
EXECUTOR = (
    "You are a helpful assistant. Answer the user's request accurately, clearly and to the "
    "point, following any instructions it gives about form and length."
)
QUESTION_FILES = ("mt_bench_questions.jsonl", "question.jsonl")
REFERENCE_FILES = ("mt_bench_reference_gpt4.jsonl", "gpt-4.jsonl")
# MT-Bench shows the judge a reference answer in these categories
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")


def conversation_text(history: Sequence[tuple[str, str]], question: str) -> str:
    """A planner's view of a turn: the conversation so far and the latest request."""
    if not history:
        return f"Request:\n{question}"
    past = "\n\n".join(f"User: {q}\n\nAssistant: {a}" for q, a in history)
    return f"Conversation so far:\n{past}\n\nThe user's latest request:\n{question}"


class TurnSolver:
    """Runs a question's turns one after another through the method's cascade."""

    def __init__(self, method: "CascadeMethod", task: "MTBench") -> None:
        self.method = method
        self.task = task

    def _turn_method(self, question_id: str, turn: int) -> "CascadeMethod":

        return self.method.with_generator(
            RetaggingGenerator(self.method.generator, question_id, turn=turn))

    async def solve(self, problem: Problem) -> "ProblemResult":

        history: list[tuple[str, str]] = []
        generations: list = []
        turns: list[dict[str, Any]] = []
        for number, question in enumerate(problem.meta["turns"], start=1):
            turn = self.task.turn_problem(problem, number, history)
            result = await self._turn_method(problem.id, number).solve(turn)
            generations.extend(result.generations)
            final = result.stages[-1].to_json()
            turns.append({"turn": number, "question": question, "answer": result.answer,
                          "resolved_stage": result.resolved_stage,
                          "perplexity": final.get("perplexity"),
                          "stages": [stage.to_json() for stage in result.stages]})
            # a turn without an answer still leaves its place in the chat (empty)
            history.append((question, result.answer or ""))
        order = [stage.name for stage in self.method.stages]
        deepest = max((t["resolved_stage"] for t in turns), key=order.index)
        by_stage = Counter(t["resolved_stage"] for t in turns)
        extra = {
            "category": problem.meta.get("category"),
            "answers": [t["answer"] for t in turns],
            "turns_resolved_by_stage": {name: by_stage.get(name, 0) for name in order},
            "turns": turns,
        }
        # a question "resolves" at the deepest stage any of its turns needed
        return ProblemResult(problem, turns[-1]["answer"], deepest, [], generations, extra=extra)


class MTBench(Task):
    """MT-Bench's 80 two-turn questions (writing, roleplay, reasoning, math, coding,
    extraction, STEM, humanities), from FastChat's question file."""

    name = "mt_bench"
    family = "open-ended"
    votable = False

    def _questions_file(self) -> Path:
        path = resolve_source(self.cfg.source, QUESTION_FILES)
        if path is None:
            raise DataError(
                "No source for task 'mt_bench'. Set task.source to FastChat's MT-Bench question "
                f"file ({' or '.join(QUESTION_FILES)}) or a directory holding it, or set "
                "COPE_DATA to such a directory.")
        return path

    def load(self) -> list[Problem]:
        path = self._questions_file()
        references = self._references(path)
        problems = []
        for number, record in read_data_lines(path):
            turns = require(record, "turns", path, number)
            if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
                raise DataError(f"{path}:{number}: 'turns' must be a list of strings.")
            qid = str(require(record, "question_id", path, number))
            reference = record.get("reference") or references.get(qid)
            problems.append(Problem(id=qid, question=turns[0], gold="", index=len(problems),
                                    meta={"turns": list(turns), "category": record.get("category"),
                                          "reference": reference}))
        return problems

    def _references(self, questions: Path) -> dict[str, list[str]]:
        """Reference answers per question id (per turn): task.references, or a reference
        file beside the questions."""
        configured = getattr(self.cfg, "references", None)
        if configured:
            path = Path(configured).expanduser()
            if not path.is_file():
                raise DataError(f"task.references={configured}: no such file.")
        else:
            path = next((questions.parent / n for n in REFERENCE_FILES
                         if (questions.parent / n).is_file()), None)
            if path is None:
                return {}
        out = {}
        for number, record in read_data_lines(path):
            choices = require(record, "choices", path, number)
            out[str(require(record, "question_id", path, number))] = list(choices[0]["turns"])
        return out

    def turn_problem(self, problem: Problem, turn: int, history: list[tuple[str, str]]
                     ) -> Problem:
        """Turn `turn` (from 1) of a question, with the chat so far, as the engine's problem."""
        question = problem.meta["turns"][turn - 1]
        return Problem(id=f"{problem.id}/turn-{turn}", question=question, gold="",
                       index=problem.index,
                       meta={"history": list(history), "turn": turn,
                             "category": problem.meta.get("category")})

    def plan_messages(self, problem: Problem, kind: str) -> tuple[Message, ...]:
        instruction = GOAL_PLANNER if kind == "goal" else GUIDELINE_PLANNER
        text = conversation_text(problem.meta.get("history", []), problem.question)
        return (("system", instruction), ("user", text))

    def execute_messages(self, problem: Problem, plans: list[Plan]) -> tuple[Message, ...]:
        messages: list[Message] = [("system", EXECUTOR)]
        for question, answer in problem.meta.get("history", []):
            messages += [("user", question), ("assistant", answer)]
        user = problem.question
        if plans:
            lines = render_plans(plans)
            user += f"\n\nA plan to follow in your response:\n{lines}"
        messages.append(("user", user))
        return tuple(messages)

    def extract(self, problem: Problem, text: str) -> str | None:
        return text.strip() or None

    def vote(self, problem: Problem, answers: list[str | None],
             rng: random.Random | None = None) -> Vote:
        """One response answers as it is (a stage of one sample, e.g. the large model
        alone); several cannot be voted on (config validation refuses such stages)."""
        if len(answers) != 1:
            raise ConfigError(f"Task '{self.name}' cannot vote over {len(answers)} open-ended "
                              "responses: use confidence=perplexity.")
        answer = answers[0]
        return Vote(answer=answer, confidence=1.0 if answer else 0.0,
                       support=[0] if answer else [], answers=[answer])

    def is_correct(self, problem: Problem, answer: str | None) -> None:
        # answers are judged pairwise afterwards (python -m cope.judge), not here
        return None

    def solver(self, method):
        return TurnSolver(method, self)

    def metrics(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        by_stage: Counter[str] = Counter()
        perplexities: dict[int, list[float]] = {}
        for row in rows:
            by_stage.update(row["turns_resolved_by_stage"])
            for turn in row["turns"]:
                if turn["perplexity"] is not None:
                    perplexities.setdefault(turn["turn"], []).append(turn["perplexity"])
        return {
            # no accuracy: open-ended answers are judged pairwise by python -m cope.judge
            "accuracy": None,
            "n_correct": None,
            "n_turns": sum(len(row["turns"]) for row in rows),
            "turns_resolved_by_stage": dict(by_stage),
            "mean_perplexity_by_turn": {str(t): mean(v) for t, v in sorted(perplexities.items())},
        }

    def details(self) -> dict[str, Any]:
        return {"judged_by": "python -m cope.judge RUN_DIR --against BASELINE_RUN_DIR"}
