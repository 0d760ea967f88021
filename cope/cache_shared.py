"""Sharing generations between machines through a directory on a shared filesystem.

SQLite's WAL mode needs shared memory, which network filesystems (NFS, Lustre, GPFS) do
not provide, so the SQLite cache stays on each machine's local disk (`cache.path`). Every
process also appends the generations it makes to a segment file of its own in
`cache.shared_dir`: one writer per file and whole lines written with one call each, which
network filesystems handle safely. Before a backend call that misses the local cache, a
process reads what other segments gained since it last looked (at most every
`cache.sync_interval_s` seconds) into its local cache.

Two machines that ask for the same sample at the same moment may both generate it; the
first line wins everywhere (inserts are idempotent), so results never diverge, and a
relaunched sweep finds everything any machine finished.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from cope.cache import GenerationCache
from cope.errors import ConfigError
from cope.generation import BackendRequest, Completion

SEGMENT_SUFFIX = ".jsonl"


class SharedGenerationCache:
    """A local GenerationCache plus the shared segment directory; same interface."""

    def __init__(self, local: GenerationCache, shared_dir: str | Path,
                 sync_interval_s: float = 5.0) -> None:
        if local.mode != "readwrite":
            raise ConfigError(f"cache.shared_dir needs cache.mode=readwrite, not {local.mode}.")
        self.local = local
        self.mode = local.mode
        self.dir = Path(shared_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sync_interval_s = sync_interval_s
        # host, pid and start time: a name no other writer, now or later, can share
        self.segment = self.dir / f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}{SEGMENT_SUFFIX}"
        self._offsets: dict[Path, int] = {}
        self._last_sync = float("-inf")
        self.imported = 0
        self.sync()

    def sync(self) -> int:
        """Import what other writers' segments gained; returns the number of new entries."""
        entries = []
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
            for line in data[:end].splitlines():
                try:
                    row = json.loads(line)
                    entries.append((row["key"], row["model"], json.dumps(row["completion"])))
                except (ValueError, KeyError, TypeError):
                    continue  # a line damaged on the filesystem is skipped, never fatal
            self._offsets[path] = offset + end
        self._last_sync = time.monotonic()
        added = self.local.import_entries(entries)
        self.imported += added
        return added

    def get(self, request: BackendRequest) -> Completion | None:
        hit = self.local.get(request)
        if hit is None and time.monotonic() - self._last_sync >= self.sync_interval_s:
            self.sync()
            hit = self.local.get(request)
        return hit

    def put(self, request: BackendRequest, completion: Completion) -> None:
        self.local.put(request, completion)
        line = json.dumps({"key": request.cache_key(), "model": request.model_identity,
                           "completion": completion.to_json()}, ensure_ascii=False) + "\n"
        fd = os.open(self.segment, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)  # close-to-open: other NFS clients see the line after this

    def count(self) -> int:
        return self.local.count()

    def close(self) -> None:
        self.local.close()
