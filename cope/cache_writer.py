"""The generation cache's writer: completions committed in batches by a thread of its own.

`put_soon` queues a completion; at the next turn of the event loop the queue goes, as one
transaction, to a writer thread with a connection of its own, so the loop sends and reads
requests while SQLite writes (it releases the GIL while it does). What finishes while a
transaction is being written waits for it and goes in the next one. `committed()` returns
once everything queued before it is committed, and `flush` (and `close`) commit it at once.
Until then `pending` answers for the queued completions.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from cope.samples import BackendRequest, Completion

Entries = Sequence[tuple[str, BackendRequest, Completion]]


class WriteBehind:
    """`insert(db, entries)` commits a batch on a connection; `connect()` opens the writer
    thread's; `db` is the cache's own, used when no event loop ever started the thread."""

    def __init__(self, insert: Callable[[sqlite3.Connection, Entries], None],
                 connect: Callable[[], sqlite3.Connection], db: sqlite3.Connection) -> None:
        self._insert = insert
        self._connect = connect
        self._db = db
        self._closed = False
        self._queued: dict[str, tuple[BackendRequest, Completion]] = {}  # for the next batch
        self._writing: dict[str, tuple[BackendRequest, Completion]] = {}  # the batch in flight
        self._flush_scheduled = False
        self._batches = 0  # batches handed out so far; the one in flight is number _batches
        self._inflight: Future | None = None
        self._waiters: dict[int, asyncio.Future] = {}  # batch number -> committed() waiters
        self._executor: ThreadPoolExecutor | None = None
        self._write_db: sqlite3.Connection | None = None  # the writer thread's connection

    def pending(self, key: str) -> Completion | None:
        """The completion queued or being written under `key`, if any."""
        entry = self._queued.get(key) or self._writing.get(key)
        return None if entry is None else entry[1]

    def put_soon(self, key: str, request: BackendRequest, completion: Completion) -> None:
        """Queue a completion; the queue goes to the writer thread at the next turn of the
        running event loop (or when the transaction in flight ends), and is committed at once
        when there is no loop."""
        if self._closed or key in self._writing:
            return
        self._queued.setdefault(key, (request, completion))
        if self._flush_scheduled or self._inflight is not None:
            return  # the transaction in flight hands out the next batch when it ends
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._start_batch)

    def _start_batch(self) -> None:
        """Hand the queue to the writer thread as one transaction (on the loop's thread)."""
        self._flush_scheduled = False
        if self._inflight is not None or not self._queued or self._closed:
            return
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cope-cache-writer")
            self._write_db = self._connect()
        self._writing, self._queued = self._queued, {}
        self._batches += 1
        number = self._batches
        entries = [(key, request, completion)
                   for key, (request, completion) in self._writing.items()]
        future = self._executor.submit(self._insert, self._write_db, entries)
        self._inflight = future

        def done(_: Future) -> None:  # in the writer thread
            try:
                loop.call_soon_threadsafe(self._batch_done, number, future)
            except RuntimeError:  # the loop is closed; close() or flush() settles the batch
                pass

        future.add_done_callback(done)

    def _batch_done(self, number: int, future: Future) -> None:
        if self._inflight is not future:  # flush() has settled it already
            return
        self._inflight = None
        error = future.exception()
        self._settle(number, error)
        if self._queued and error is None:  # after a failure, the next put or wait retries
            self._start_batch()

    def _settle(self, number: int, error: BaseException | None) -> None:
        """The batch `number` is committed, or failed: its entries go back to the queue (a
        later flush retries them) and its waiters get the error."""
        if error is not None:
            self._queued = {**self._writing, **self._queued}
        self._writing = {}
        for batch in [b for b in self._waiters if b <= number]:
            waiter = self._waiters.pop(batch)
            if waiter.done() or waiter.get_loop().is_closed():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def flush(self) -> None:
        """Commit the queued completions now (after the transaction in flight)."""
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            try:
                inflight.result()
            except BaseException as exc:  # the batch is queued again and retried below
                self._settle(self._batches, exc)
            else:
                self._settle(self._batches, None)
        if not self._queued or self._closed:
            return
        self._writing, self._queued = self._queued, {}
        self._batches += 1
        entries = [(key, request, completion)
                   for key, (request, completion) in self._writing.items()]
        try:
            self._insert(self._write_db or self._db, entries)
        except BaseException as exc:
            self._settle(self._batches, exc)
            raise
        self._settle(self._batches, None)

    async def committed(self) -> None:
        """Return once everything queued so far is committed: with whatever else finishes
        before the writer thread takes the next batch (one transaction for all)."""
        if self._queued:
            target = self._batches + 1  # the next batch
        elif self._writing:
            target = self._batches  # the one in flight
        else:
            return
        waiter = self._waiters.get(target)
        if waiter is None:
            waiter = self._waiters[target] = asyncio.get_running_loop().create_future()
        if self._inflight is None and not self._flush_scheduled:
            self._start_batch()
        await asyncio.shield(waiter)

    def close(self) -> None:
        """Commit what is queued, stop the thread, close its connection."""
        try:
            self.flush()
        finally:
            self._closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            if self._write_db is not None:
                self._write_db.close()
                self._write_db = None
