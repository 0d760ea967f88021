"""A content-addressed generation cache in SQLite.

A sample's key is a hash of (model identity, messages, sampling parameters, sample index),
so any run, cell of a sweep or process that asks for the same sample gets the same text.
WAL journaling and a busy timeout let several processes on one machine share the file;
inserts are idempotent (the first writer of a key wins, later ones are ignored).

`get_many` and `put_many` take keys computed once by the caller and do a batch in one
statement or transaction. `put_soon` queues a completion for a writer thread
(cope/cache_writer.py); until committed, queued completions answer lookups from memory. A run
awaits `committed()` before it writes a problem's record, so a finished generation is always
in the cache before any record that depends on it.
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
from cope.cache_writer import WriteBehind
from cope.errors import CacheMissError, ConfigError
from cope.samples import BackendRequest, Completion

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


def enable_wal(db: sqlite3.Connection, patience_s: float = 60.0) -> None:
    """Switch the file to WAL journaling. When two processes open a new file at once, SQLite
    answers the second switch with "database is locked" at once, without waiting for its busy
    timeout, so the switch is tried again until the first one is done."""
    deadline = time.monotonic() + patience_s
    delay = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


class GenerationCache:
    """mode: readwrite (look up, store misses), readonly (replay: a miss is an error), survey
    (read only: a miss is None, and the Generator counts it instead of generating), off."""

    def __init__(self, path: str | Path | None, mode: str = "readwrite",
                 shared: SharedSegments | None = None, reuse_former_keys: bool = False) -> None:
        if mode not in ("readwrite", "readonly", "survey", "off"):
            raise ConfigError(f"cache.mode='{mode}': choose readwrite, readonly, survey or off.")
        if shared is not None and mode != "readwrite":
            raise ConfigError(f"cache.shared_dir needs cache.mode=readwrite, not {mode}.")
        self.mode = mode
        # rows keyed by what was asked alone (cope/identity.py): answered only when the user
        # says they were made under the run's settings; each one is then stored again under
        # its full key
        self.reuse_former_keys = reuse_former_keys
        self.shared = shared  # other machines' generations (cope/cache_shared.py)
        self.imported = 0
        self.path = Path(path) if path is not None else None
        self._db: sqlite3.Connection | None = None
        self._writer: WriteBehind | None = None  # readwrite: completions not yet committed
        self._lookups: list[tuple[Sequence[BackendRequest], Sequence[str], asyncio.Future]] = []
        if mode == "off":
            return
        if self.path is None:
            raise ConfigError("The generation cache needs a path (cache.path).")
        if mode in ("readonly", "survey") and not self.path.is_file():
            raise ConfigError(
                f"cache.mode={mode} reads {self.path}, which does not exist. "
                "Run once with cache.mode=readwrite first."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        if mode == "readwrite":
            enable_wal(self._db)
            self._db.execute(SCHEMA)
            self._writer = WriteBehind(self._insert, self._connect, self._db)

    def _connect(self) -> sqlite3.Connection:
        # the event loop may run in a worker thread (notebooks), and the writer thread uses a
        # connection of its own: one thread at a time uses each connection
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 60000")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def get(self, request: BackendRequest) -> Completion | None:
        """The cached completion, None on a miss (readwrite, off); raises on a readonly miss."""
        return self.get_many([request], [request.cache_key()])[0]

    def get_many(self, requests: Sequence[BackendRequest], keys: Sequence[str]
                 ) -> list[Completion | None]:
        """Cached completions of requests whose keys are given, None for misses; in readonly
        mode the first miss raises."""
        if self._db is None:
            return [None] * len(requests)
        return self._answers(requests, keys, self._found(self._with_version1(requests, keys)))

    async def lookup(self, requests: Sequence[BackendRequest], keys: Sequence[str]
                     ) -> list[Completion | None]:
        """get_many for coroutines: the lookups asked for in one turn of the event loop are
        made at the next turn in one query."""
        if self._db is None:
            return [None] * len(requests)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._lookups.append((requests, keys, future))
        if len(self._lookups) == 1:
            loop.call_soon(self._run_lookups)
        return await future

    def _run_lookups(self) -> None:
        lookups, self._lookups = self._lookups, []
        try:
            found = self._found([key for requests, keys, _ in lookups
                                 for key in self._with_version1(requests, keys)])
        except Exception as exc:  # each waiting lookup gets the error
            found, error = {}, exc
        else:
            error = None
        for requests, keys, future in lookups:
            if future.done():  # its caller was cancelled
                continue
            if error is not None:
                future.set_exception(error)
                continue
            try:
                future.set_result(self._answers(requests, keys, found))
            except CacheMissError as exc:
                future.set_exception(exc)

    def _found(self, keys: Sequence[str]) -> dict[str, str]:
        """Stored completion texts of the keys that are not queued."""
        unique = [key for key in dict.fromkeys(keys) if self._pending(key) is None]
        found = self._select(unique)
        if self.shared is not None and len(found) < len(unique) and self.shared.due():
            self.import_entries(self.shared.collect())
            found.update(self._select([key for key in unique if key not in found]))
        return found

    def _with_version1(self, requests: Sequence[BackendRequest], keys: Sequence[str]
                       ) -> list[str]:
        if not self.reuse_former_keys:
            return list(keys)
        return [*keys, *(key for request in requests for key in request.former_keys())]

    def _answers(self, requests: Sequence[BackendRequest], keys: Sequence[str],
                 found: dict[str, str]) -> list[Completion | None]:
        results: list[Completion | None] = []
        upgraded = []
        for request, key in zip(requests, keys):
            queued = self._pending(key)
            if queued is not None:
                results.append(queued)
                continue
            row = found.get(key)
            if row is None and self.reuse_former_keys:
                row = next((found[k] for k in request.former_keys() if k in found), None)
                # a batched sample is stored under its full key only once its whole batch is
                # found (the Generator does it): one member missing means the batch is decoded
                # again, and its fresh outputs are the ones to keep
                if row is not None and not request.batch:
                    completion = Completion.from_json(fast_json.loads(row))
                    upgraded.append((key, request, completion))
                    results.append(completion)
                    continue
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
        self.put_many(upgraded)
        return results

    def _pending(self, key: str) -> Completion | None:
        return None if self._writer is None else self._writer.pending(key)

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
        self._insert(self._db, entries)

    def _insert(self, db: sqlite3.Connection,
                entries: Sequence[tuple[str, BackendRequest, Completion]]) -> None:
        now = time.time()
        rows = [(key, request.model_identity, completion_text(completion), now)
                for key, request, completion in entries]
        # IMMEDIATE takes the write lock up front, so a busy file is waited for (busy_timeout)
        # instead of failing when a read transaction would have to turn into a write
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(INSERT, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if self.shared is not None:
            self.shared.publish([(key, model, completion) for key, model, completion, _ in rows])

    def put_soon(self, key: str, request: BackendRequest, completion: Completion) -> None:
        """Queue a completion for the writer (cope/cache_writer.py); committed at once when
        there is no running event loop."""
        if self._writer is not None:
            self._writer.put_soon(key, request, completion)

    async def committed(self) -> None:
        """Return once everything queued so far is committed."""
        if self._writer is not None:
            await self._writer.committed()

    def flush(self) -> None:
        """Commit the queued completions now (after the transaction in flight)."""
        if self._writer is not None:
            self._writer.flush()

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
            try:
                if self._writer is not None:
                    self._writer.close()
            finally:
                self._writer = None
                self._db.close()
                self._db = None
