"""A content-addressed generation cache in SQLite.

A sample's key is a hash of (model identity, messages, sampling parameters, sample index),
so any run, cell of a sweep or process that asks for the same sample gets the same text.
WAL journaling and a busy timeout let several processes on one machine share the file;
inserts are idempotent (the first writer of a key wins, later ones are ignored).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

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


class GenerationCache:
    """mode: readwrite (look up, store misses), readonly (replay: a miss is an error), off."""

    def __init__(self, path: str | Path | None, mode: str = "readwrite") -> None:
        if mode not in ("readwrite", "readonly", "off"):
            raise ConfigError(f"cache.mode='{mode}': choose readwrite, readonly or off.")
        self.mode = mode
        self.path = Path(path) if path is not None else None
        self._db: sqlite3.Connection | None = None
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
        if self._db is None:
            return None
        key = request.cache_key()
        row = self._db.execute("SELECT completion FROM generations WHERE key = ?", (key,)).fetchone()
        if row is None:
            if self.mode == "readonly":
                raise CacheMissError(
                    f"cache.mode=readonly: no cached generation for model "
                    f"'{request.model_identity}', sample {request.sample_index} (key {key[:12]}). "
                    "The run's config differs from the one that filled the cache."
                )
            return None
        return Completion.from_json(json.loads(row[0]))

    def put(self, request: BackendRequest, completion: Completion) -> None:
        if self._db is None or self.mode != "readwrite":
            return
        self._db.execute(
            "INSERT OR IGNORE INTO generations (key, model, completion, created) VALUES (?, ?, ?, ?)",
            (
                request.cache_key(),
                request.model_identity,
                json.dumps(completion.to_json(), ensure_ascii=False),
                time.time(),
            ),
        )

    def import_entries(self, entries: list[tuple[str, str, str]]) -> int:
        """Store (key, model identity, completion JSON) rows made elsewhere; returns how many
        were new. Used to bring in generations other machines shared."""
        if self._db is None or self.mode != "readwrite" or not entries:
            return 0
        before = self._db.total_changes
        now = time.time()
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR IGNORE INTO generations (key, model, completion, created) VALUES (?, ?, ?, ?)",
            [(key, model, completion, now) for key, model, completion in entries])
        self._db.execute("COMMIT")
        return self._db.total_changes - before

    def count(self) -> int:
        """Number of stored generations."""
        if self._db is None:
            return 0
        return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
