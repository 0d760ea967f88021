"""Run directories as the viewer reads them: tolerant of what a running or an old run leaves
behind, re-read only when a file changed, and samples found by their offsets, so that opening
one problem of a large run reads that problem's lines only.

Nothing here writes: a run directory is read while cope may be writing it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Lines:
    """The whole records of a JSONL file, and what was wrong with the rest."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_jsonl(path: Path) -> Lines:
    """Every line that parses as a JSON object. A last line without its newline is being
    written (or was torn by a kill) and is left out with a note; a line that does not parse
    is left out with its line number."""
    out = Lines()
    if not path.exists():
        return out
    data = path.read_bytes()
    pieces = data.split(b"\n")
    if pieces[-1].strip():
        out.problems.append(f"{path.name}: the last line is incomplete ({len(pieces[-1])} bytes, "
                            "still being written or torn by a kill); left out")
    for number, raw in enumerate(pieces[:-1], 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            out.problems.append(f"{path.name} line {number}: not JSON ({exc.msg}); left out")
            continue
        if not isinstance(row, dict):
            out.problems.append(f"{path.name} line {number}: not a record; left out")
            continue
        out.rows.append(row)
    return out


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


class SampleIndex:
    """Byte offsets of samples.jsonl's lines by problem id, extended as the file grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets: dict[str, list[tuple[int, int]]] = {}
        self.scanned = 0  # bytes indexed: always the end of a whole line
        self.lock = threading.Lock()

    def _extend(self) -> None:
        stamp = _stamp(self.path)
        if stamp is None:
            return
        if stamp[0] < self.scanned:  # rewritten from scratch
            self.offsets, self.scanned = {}, 0
        with self.path.open("rb") as handle:
            handle.seek(self.scanned)
            position = self.scanned
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # being written: indexed once whole
                problem_id = _problem_id(raw)
                if problem_id is not None:
                    self.offsets.setdefault(problem_id, []).append((position, len(raw)))
                position += len(raw)
            self.scanned = position

    def samples(self, problem_id: str) -> list[dict[str, Any]]:
        with self.lock:
            self._extend()
            spans = list(self.offsets.get(problem_id, ()))
        out = []
        with self.path.open("rb") as handle:
            for start, length in spans:
                handle.seek(start)
                try:
                    out.append(json.loads(handle.read(length)))
                except json.JSONDecodeError:
                    continue
        return out


_DECODER = json.JSONDecoder()
_PREFIX = b'{"problem_id":'


def _problem_id(raw: bytes) -> str | None:
    """A sample line's problem id; cope writes it first, so most lines need no full parse."""
    if raw.startswith(_PREFIX):
        try:
            value, _ = _DECODER.raw_decode(raw[len(_PREFIX):].decode().lstrip())
            return str(value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    try:
        row = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return str(row["problem_id"]) if isinstance(row, dict) and "problem_id" in row else None


class RunFiles:
    """One run directory's config, metrics and problems, re-read when one of them changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples = SampleIndex(path / "samples.jsonl")
        self._stamps: tuple | None = None
        self._loaded: dict[str, Any] = {}
        self.lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        """{"config", "metrics", "problems", "problems_notes"}; config is None (with a note)
        when config.yaml does not parse."""
        files = ("config.yaml", "metrics.json", "problems.jsonl")
        stamps = tuple(_stamp(self.path / name) for name in files)
        with self.lock:
            if stamps != self._stamps:
                self._loaded, self._stamps = self._read(), stamps
            return self._loaded

    def _read(self) -> dict[str, Any]:
        notes: list[str] = []
        try:
            config = yaml.safe_load((self.path / "config.yaml").read_text())
            if not isinstance(config, dict):
                raise ValueError("not a mapping")
        except (OSError, ValueError, yaml.YAMLError) as exc:
            config = None
            notes.append(f"config.yaml does not parse ({exc}); the run is shown without it")
        metrics = None
        if (self.path / "metrics.json").exists():
            try:
                metrics = json.loads((self.path / "metrics.json").read_text())
            except (OSError, json.JSONDecodeError) as exc:
                notes.append(f"metrics.json does not parse ({exc}); the run counts as unfinished")
        lines = read_jsonl(self.path / "problems.jsonl")
        notes += lines.problems
        # one record per problem: should a problem appear twice (resumed), its last stands
        problems = list({str(p.get("id")): p for p in lines.rows}.values())
        problems.sort(key=lambda p: p.get("index", 0))
        return {"config": config, "metrics": metrics, "problems": problems, "notes": notes}
