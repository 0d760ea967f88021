"""Sharing generations between machines through a directory on a shared filesystem.

SQLite's WAL mode needs shared memory, which network filesystems (NFS, Lustre, GPFS) do
not provide, so the SQLite cache stays on each machine's local disk (`cache.path`). Every
process also appends the generations it commits to a segment file of its own in
`cache.shared_dir`: one writer per file and whole lines written with one call each, which
network filesystems handle safely. When a lookup misses the local cache, the process reads
what other segments gained since it last looked (at most every `cache.sync_interval_s`
seconds) into its local cache and looks again.

Two machines that ask for the same sample at the same moment may both generate it; the
first stored line wins everywhere (inserts are idempotent), so records never diverge, and a
relaunched sweep finds everything any machine finished.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

from cope.samples import Completion

SEGMENT_SUFFIX = ".jsonl"

Row = tuple[str, str, str]  # (cache key, model identity, completion JSON)


def row_line(row: Row) -> str:
    """One generation as a line of a segment (or of an archive, cope/cache_archive.py)."""
    key, model, completion = row
    return json.dumps({"key": key, "model": model, "completion": json.loads(completion)},
                      ensure_ascii=False) + "\n"


def parse_row_line(line: str | bytes) -> Row:
    """The row a line holds; raises ValueError, KeyError or TypeError on a damaged line."""
    entry = json.loads(line)
    if not isinstance(entry["key"], str) or not isinstance(entry["model"], str):
        raise TypeError("key and model must be strings")
    Completion.from_json(entry["completion"])  # the fields a lookup will need
    return entry["key"], entry["model"], json.dumps(entry["completion"], ensure_ascii=False)


def parse_rows(data: bytes) -> list[Row]:
    """The rows of whole segment lines; a line damaged on the filesystem is skipped, never
    fatal."""
    rows: list[Row] = []
    for line in data.splitlines():
        try:
            rows.append(parse_row_line(line))
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def segment_keys(path: str | Path) -> list[str]:
    """The cache key of every generation a segment holds, in the order it was published."""
    return [key for key, _, _ in parse_rows(Path(path).read_bytes())]


class SharedSegments:
    """This process's segment file in the shared directory, and what it read of the others."""

    def __init__(self, shared_dir: str | Path, sync_interval_s: float = 5.0) -> None:
        self.dir = Path(shared_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sync_interval_s = sync_interval_s
        # host, pid and start time: a name no other writer, now or later, can share
        self.segment = self.dir / f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}{SEGMENT_SUFFIX}"
        self._offsets: dict[Path, int] = {}
        self._last_collect = float("-inf")

    def publish(self, rows: list[Row]) -> None:
        """Append committed generations to this process's segment."""
        if not rows:
            return
        text = "".join(row_line(row) for row in rows)
        fd = os.open(self.segment, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
        finally:
            os.close(fd)  # close-to-open: other NFS clients see the lines after this

    def due(self) -> bool:
        return time.monotonic() - self._last_collect >= self.sync_interval_s

    def collect(self) -> list[Row]:
        """What other writers' segments gained since the last call."""
        rows: list[Row] = []
        for path in sorted(self.dir.glob(f"*{SEGMENT_SUFFIX}")):
            if path == self.segment:
                continue
            offset = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            rows += parse_rows(data[:end])
            self._offsets[path] = offset + end
        self._last_collect = time.monotonic()
        return rows


def duplicate_work(shared_dir: str | Path) -> dict[str, int]:
    """How much of what a sweep's processes generated was made more than once: every line
    of a segment is one generation some process paid for."""
    segments = sorted(Path(shared_dir).glob(f"*{SEGMENT_SUFFIX}"))
    keys = [key for path in segments for key in segment_keys(path)]
    return {"processes": len(segments), "generated": len(keys), "unique": len(set(keys)),
            "duplicates": len(keys) - len(set(keys))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cope.cache_shared",
        description="Report the duplicate work in a cache.shared_dir: generations made by "
                    "more than one process because they asked at the same moment.")
    parser.add_argument("shared_dir")
    args = parser.parse_args(argv)
    if not Path(args.shared_dir).is_dir():
        print(f"error: {args.shared_dir} is not a directory", file=sys.stderr)
        return 2
    work = duplicate_work(args.shared_dir)
    share = work["duplicates"] / work["generated"] if work["generated"] else 0.0
    print(f"{work['generated']} generations by {work['processes']} processes: "
          f"{work['unique']} unique, {work['duplicates']} made again ({share:.1%} of the work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
