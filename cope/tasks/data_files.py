"""Reading a task's data: JSONL files (plain or gzipped) with errors that name file and
line, a `task.source` that is a file or a directory, or the Hugging Face Hub when online."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cope.errors import DataError
from cope.tasks.base import Problem


def read_data_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
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
