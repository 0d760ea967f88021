"""Run records: the resolved config, samples.jsonl, problems.jsonl and metrics.json.

Lines are appended with one write call each, as the run goes, so an interrupted run keeps
every sample and problem it finished and no line is ever half written by us.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from cope.errors import CopeError
from cope.secrets import redact, secret_values

SAMPLES = "samples.jsonl"
PROBLEMS = "problems.jsonl"
METRICS = "metrics.json"
CONFIG = "config.yaml"


class RunDirError(CopeError):
    """The run directory already holds records of another run."""


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class RunRecorder:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        taken = [name for name in (SAMPLES, PROBLEMS, METRICS) if (self.run_dir / name).exists()]
        if taken:
            raise RunDirError(
                f"{self.run_dir} already holds a run ({', '.join(taken)}); records are never "
                "overwritten or mixed. Choose another run_dir (or hydra.run.dir)."
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._secrets = secret_values()

    def _append(self, name: str, record: dict[str, Any]) -> None:
        fd = os.open(self.run_dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, _line(redact(record, self._secrets)))
        finally:
            os.close(fd)

    def write_config(self, config: dict[str, Any]) -> None:
        text = yaml.safe_dump(redact(config), sort_keys=False, allow_unicode=True)
        write_atomic(self.run_dir / CONFIG, text)

    def sample(self, record: dict[str, Any]) -> None:
        self._append(SAMPLES, record)

    def problem(self, record: dict[str, Any]) -> None:
        self._append(PROBLEMS, record)

    def finish(self, metrics: dict[str, Any]) -> None:
        """Order problems.jsonl by problem index (problems finish out of order when several
        run at once) and write metrics.json."""
        path = self.run_dir / PROBLEMS
        if path.exists():
            rows = sorted(read_jsonl(path), key=lambda row: row["index"])
            write_atomic(path, "".join(_line(row).decode("utf-8") for row in rows))
        write_atomic(self.run_dir / METRICS, json.dumps(redact(metrics), indent=2) + "\n")
