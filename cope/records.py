"""Run records: the resolved config, samples.jsonl, problems.jsonl and metrics.json.

Lines are appended with one write call each, as the run goes, so an interrupted run keeps
every sample and problem it finished and no line is ever half written by us. The files stay
open (O_APPEND) for the run: no open and close per line.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from cope import fast_json
from cope.errors import CopeError
from cope.secrets import json_may_hold_secrets, redact, secret_values

log = logging.getLogger(__name__)

SAMPLES = "samples.jsonl"
PROBLEMS = "problems.jsonl"
METRICS = "metrics.json"
CONFIG = "config.yaml"
LOCK = ".lock"  # held while a process writes the run's records


class RunDirError(CopeError):
    """The run directory already holds records of another run."""


def _line(record: dict[str, Any]) -> bytes:
    return fast_json.dumps(record) + b"\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# keys that may change between a run and its resumption without changing its results
RESUMABLE_CHANGES = ("run_dir", "resume", "progress", "concurrency", "event_loop", "budget",
                     "cache", "faults", "http", "backend.n_threads", "backend.verbose", "tracker")


def read_complete_lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file that were written whole: a last line without its newline
    (a process killed mid-write) is dropped."""
    if not path.exists():
        return []
    rows = []
    data = path.read_bytes()
    for raw in data.split(b"\n")[:-1]:  # the piece after the last newline is torn or empty
        if raw.strip():
            try:
                rows.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return rows


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


# where a model is served may change too (an endpoint restarted on another port); what it
# is (its identity) may not
RESUMABLE_FIELDS = ("base_url", "server")


def _resumable(key: str) -> bool:
    parts = key.split(".")
    if parts[0] == "models" and len(parts) > 2 and parts[2] in RESUMABLE_FIELDS:
        return True
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_CHANGES)


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ, ignoring those a resumed run may change."""
    a = {k: v for k, v in _flatten(old).items() if not _resumable(k)}
    b = {k: v for k, v in _flatten(new).items() if not _resumable(k)}
    # keys on one side only come from another version of cope's config schema (a field added
    # since the run started): they are reported, not refused
    one_sided = sorted(a.keys() ^ b.keys())
    if one_sided:
        log.warning("Resuming a run recorded with another config schema; keys on one side only: "
                    "%s", ", ".join(one_sided[:12]))
    return sorted(k for k in a.keys() & b.keys() if a[k] != b[k])


def _lock_run_dir(run_dir: Path) -> int | None:
    """Hold an exclusive lock on the run directory, so that two processes never append to
    the same records (a sweep launched twice, a resume while the run still goes on)."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: run directories go unguarded
        return None
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(f"{run_dir} is in use by another cope process (pid {holder}); "
                          "wait for it to end or stop it, then resume=true.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


class RunRecorder:
    """Writes one run's records. With `resume`, continues a run that stopped: it keeps the
    problems that finished and their samples, and drops the samples of the problem that was
    cut off (they are regenerated from the cache at no cost)."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], resume: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self._secrets = secret_values()
        self.resumed: list[dict[str, Any]] = []
        self._fds: dict[str, int] = {}
        self._order: list[int] = []  # problem index of each line of problems.jsonl
        config = redact(config, self._secrets)
        taken = [name for name in (SAMPLES, PROBLEMS, METRICS) if (self.run_dir / name).exists()]
        if taken and not resume:
            raise RunDirError(
                f"{self.run_dir} already holds a run ({', '.join(taken)}); records are never "
                "overwritten or mixed. Choose another run_dir (or hydra.run.dir), or continue "
                "that run with resume=true."
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_run_dir(self.run_dir)
        if resume and (self.run_dir / CONFIG).exists():
            self._continue(config)
        else:
            write_atomic(self.run_dir / CONFIG,
                         yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    def _continue(self, config: dict[str, Any]) -> None:
        old = yaml.safe_load((self.run_dir / CONFIG).read_text())
        differences = config_differences(old, config)
        if differences:
            raise RunDirError(
                f"resume=true: {self.run_dir} holds a run of another config (differs in "
                f"{', '.join(differences[:8])}). Resume with the same config, or use a new run_dir."
            )
        # a problem with failed samples is solved again: its good samples come from the
        # cache, and only the failed requests are sent again
        self.resumed = [row for row in read_complete_lines(self.run_dir / PROBLEMS)
                        if not row.get("failed_samples")]
        self._order = [row["index"] for row in self.resumed]
        finished = {row["id"] for row in self.resumed}
        samples = [s for s in read_complete_lines(self.run_dir / SAMPLES)
                   if s.get("problem_id") in finished]
        write_atomic(self.run_dir / SAMPLES, "".join(_line(s).decode("utf-8") for s in samples))
        write_atomic(self.run_dir / PROBLEMS,
                     "".join(_line(r).decode("utf-8") for r in self.resumed))
        (self.run_dir / METRICS).unlink(missing_ok=True)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.run_dir / name,
                                           os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = fast_json.dumps(record)
        if json_may_hold_secrets(data.decode("utf-8"), self._secrets):  # rare: walk and redact
            data = fast_json.dumps(redact(record, self._secrets))
        os.write(fd, data + b"\n")

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def release(self) -> None:
        """Close the record files and let another process take the run directory."""
        self.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops its flock
            self._lock_fd = None

    def sample(self, record: dict[str, Any]) -> None:
        self._append(SAMPLES, record)

    def problem(self, record: dict[str, Any]) -> None:
        self._append(PROBLEMS, record)
        self._order.append(record["index"])

    def finish(self, metrics: dict[str, Any]) -> None:
        """Order problems.jsonl by problem index (problems finish out of order when several
        run at once) and write metrics.json."""
        self.close()
        path = self.run_dir / PROBLEMS
        if path.exists() and self._order != sorted(self._order):
            # the lines as written, reordered: no parsing, no re-encoding
            lines = path.read_bytes().split(b"\n")[:-1]
            if len(lines) == len(self._order):
                ordered = [line for _, line in sorted(zip(self._order, lines), key=lambda p: p[0])]
                write_atomic(path, b"".join(line + b"\n" for line in ordered).decode("utf-8"))
            else:  # written to by someone else as well: sort what is there
                rows = sorted(read_complete_lines(path), key=lambda row: row["index"])
                write_atomic(path, "".join(_line(row).decode("utf-8") for row in rows))
        write_atomic(self.run_dir / METRICS, json.dumps(redact(metrics), indent=2) + "\n")
