"""A content-addressed generation cache in SQLite.

A sample's key is a hash of (model identity, messages, sampling parameters, sample index),
so any run, cell of a sweep or process that asks for the same sample gets the same text.
WAL journaling and a busy timeout let several processes on one machine share the file;
inserts are idempotent (the first writer of a key wins, later ones are ignored).

`get_many` and `put_many` take keys computed once by the caller and do a batch in one
statement or transaction. `put_soon` queues a completion and commits the queue at the next
turn of the event loop, so everything that finished in one turn is one transaction; `flush`
(and `close`) commit it at once: a run flushes before it writes a problem's record, so a
finished generation is always in the cache before any record that depends on it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from cope import fast_json
from cope.cache_shared import SharedSegments
from cope.errors import CacheMissError, ConfigError
from cope.generation import BackendRequest, Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL
)
"""
INSERT = "INSERT OR IGNORE INTO generations (key, model, completion, created) VALUES (?, ?, ?, ?)"
LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...), well under SQLite's variable limit


def completion_text(completion: Completion) -> str:
    """A completion as the cache stores it (JSON text)."""
    if completion.token_logprobs is None:  # the common case: no float that orjson would change
        return fast_json.dumps(completion.to_json()).decode("utf-8")
    return json.dumps(completion.to_json(), ensure_ascii=False)  # keeps -Infinity as it is


class GenerationCache:
    """mode: readwrite (look up, store misses), readonly (replay: a miss is an error), off."""

    def __init__(self, path: str | Path | None, mode: str = "readwrite",
                 shared: SharedSegments | None = None) -> None:
        if mode not in ("readwrite", "readonly", "off"):
            raise ConfigError(f"cache.mode='{mode}': choose readwrite, readonly or off.")
        if shared is not None and mode != "readwrite":
            raise ConfigError(f"cache.shared_dir needs cache.mode=readwrite, not {mode}.")
        self.mode = mode
        self.shared = shared  # other machines' generations (cope/cache_shared.py)
        self.imported = 0
        self.path = Path(path) if path is not None else None
        self._db: sqlite3.Connection | None = None
        self._queued: dict[str, tuple[BackendRequest, Completion]] = {}
        self._flush_scheduled = False
        self._commit: asyncio.Future | None = None  # resolved by the next flush
        if mode == "off":
            return
        if self.path is None:
            raise ConfigError("The generation cache needs a path (cache.path).")
        if mode == "readonly" and not self.path.is_file():
            raise ConfigError(
                f"cache.mode=readonly replays {self.path}, which does not exist. "
                "Run once with cache.mode=readwrite first."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the event loop may run in a worker thread (notebooks); one thread at a time uses it
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 60000")
        if mode == "readwrite":
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(SCHEMA)

    def get(self, request: BackendRequest) -> Completion | None:
        """The cached completion, None on a miss (readwrite, off); raises on a readonly miss."""
        return self.get_many([request], [request.cache_key()])[0]

    def get_many(self, requests: Sequence[BackendRequest], keys: Sequence[str]
                 ) -> list[Completion | None]:
        """Cached completions of requests whose keys are given, None for misses; in readonly
        mode the first miss raises."""
        if self._db is None:
            return [None] * len(requests)
        unique = [key for key in dict.fromkeys(keys) if key not in self._queued]
        found = self._select(unique)
        if self.shared is not None and len(found) < len(unique) and self.shared.due():
            self.import_entries(self.shared.collect())
            found.update(self._select([key for key in unique if key not in found]))
        results: list[Completion | None] = []
        for request, key in zip(requests, keys):
            queued = self._queued.get(key)
            if queued is not None:
                results.append(queued[1])
                continue
            row = found.get(key)
            if row is None:
                if self.mode == "readonly":
                    raise CacheMissError(
                        f"cache.mode=readonly: no cached generation for model "
                        f"'{request.model_identity}', sample {request.sample_index} "
                        f"(key {key[:12]}). The run's config differs from the one that filled "
                        "the cache."
                    )
                results.append(None)
            else:
                results.append(Completion.from_json(fast_json.loads(row)))
        return results

    def _select(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(
                f"SELECT key, completion FROM generations WHERE key IN ({marks})", chunk))
        return found

    def put(self, request: BackendRequest, completion: Completion) -> None:
        self.put_many([(request.cache_key(), request, completion)])

    def put_many(self, entries: Sequence[tuple[str, BackendRequest, Completion]]) -> None:
        """Store (key, request, completion) entries in one transaction: committed (in the
        WAL, visible to every process) when this returns."""
        if self._db is None or self.mode != "readwrite" or not entries:
            return
        now = time.time()
        rows = [(key, request.model_identity, completion_text(completion), now)
                for key, request, completion in entries]
        # IMMEDIATE takes the write lock up front, so a busy file is waited for (busy_timeout)
        # instead of failing when a read transaction would have to turn into a write
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(INSERT, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if self.shared is not None:
            self.shared.publish([(key, model, completion) for key, model, completion, _ in rows])

    def put_soon(self, key: str, request: BackendRequest, completion: Completion) -> None:
        """Queue a completion; the queue is committed at the next turn of the running event
        loop (at once when there is none), with everything else queued in this turn."""
        if self._db is None or self.mode != "readwrite":
            return
        self._queued.setdefault(key, (request, completion))
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        try:
            self.flush()
        except Exception:  # handed to the waiters of committed(); the queue is kept
            pass

    def flush(self) -> None:
        """Commit the queued completions now."""
        commit, self._commit = self._commit, None
        try:
            if self._queued and self._db is not None:
                entries = [(key, request, completion)
                           for key, (request, completion) in self._queued.items()]
                self.put_many(entries)  # raises with the queue intact: a later flush retries
                self._queued.clear()
        except BaseException as exc:
            if commit is not None and not commit.done():
                commit.set_exception(exc)
            raise
        if commit is not None and not commit.done():
            commit.set_result(None)

    async def committed(self) -> None:
        """Return once everything queued so far is committed: at the next turn of the loop,
        together with whatever else finishes in this one (one transaction for all)."""
        if not self._queued:
            return
        if not self._flush_scheduled:
            self.flush()
            return
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._commit)

    def import_entries(self, entries: Sequence[tuple[str, str, str]]) -> int:
        """Store (key, model identity, completion JSON) rows made elsewhere; returns how many
        were new. Used to bring in generations other machines shared."""
        if self._db is None or self.mode != "readwrite" or not entries:
            return 0
        before = self._db.total_changes
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(INSERT, [(key, model, completion, now)
                                          for key, model, completion in entries])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        added = self._db.total_changes - before
        self.imported += added
        return added

    def count(self) -> int:
        """Number of stored generations."""
        if self._db is None:
            return 0
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None
