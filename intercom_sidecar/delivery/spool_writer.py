"""The writer thread of `SqliteSpool`: it owns the SQLite connection and commits queued operations in groups.

The event loop puts each operation on a thread-safe queue and carries on; the writer takes everything queued,
applies it in ONE transaction and commits (synchronous=FULL: the commit fsyncs the WAL), then settles each caller's
future on the event loop with `loop.call_soon_threadsafe`. See `spool_sqlite` for what this guarantees.

A group that fails (a full disk, an I/O error, a change that raises) is undone whole: each caller waiting on it gets
SpoolError; the changes nobody waits for (`post`) are queued again, a few times with a pause, all but the one that
raised, since they record what already happened (an event delivered, dead-lettered).

`Checkpointer` is a second thread, with a connection of its own, that copies the WAL into the database file. The
writer's connection never checkpoints during a commit (`wal_autocheckpoint=0`): with SQLite's default, every commit
that took the WAL past 1,000 pages wrote them all into the database and fsynced it before returning, so each
caller of that group waited for a checkpoint on top of its own fsync. Twice a second, when something was
committed, the checkpointer runs a PASSIVE checkpoint, which never blocks the writer (commits go on appending to
the WAL meanwhile). Then the writer, between two groups, checkpoints the few frames committed during it; caught up
like that, its next transaction starts the WAL again from the beginning (a PASSIVE checkpoint alone rarely catches
up while commits come every millisecond or two, and the WAL would only grow). Should the WAL still outgrow
`wal_limit_bytes` (a reader holding old frames, say), a TRUNCATE checkpoint waits for the writer between two groups
and empties it: the WAL stays bounded. If the checkpointer cannot open its connection, the writer's connection
checkpoints on its own again, as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from intercom_sidecar.delivery.spool import SpoolError

__all__ = ["Apply", "Checkpointer", "Op", "Settle", "Writer"]

_log = logging.getLogger("intercom_sidecar.delivery.spool_sqlite")

Apply = Callable[[sqlite3.Connection, float], Any]
"""A change (or read) the writer thread applies inside a group's transaction; gets the group's clock time."""
Settle = Callable[[Any], None]
"""Bookkeeping run on the event loop once the group is settled: gets the result, or None if the group failed."""


_POST_RETRIES = 3
"""How often a posted change (nobody waits for it) is tried again after its group failed for another reason."""
_RETRY_PAUSE_SECONDS = 0.1
"""The writer's pause before the group that retries them (doubling each time): a full disk is given a moment."""


_SHRINK_PAUSE_ROUNDS = 20
"""Checkpointer rounds (of `interval`, 0.5 s) without a TRUNCATE after one that readers kept waiting."""
_DEFAULT_AUTOCHECKPOINT_PAGES = 1000
"""SQLite's own `wal_autocheckpoint`, given back to the writer's connection if the checkpointer cannot work."""


class Op:
    __slots__ = ("apply", "future", "retries", "settle")

    def __init__(
        self, apply: Apply | None, settle: Settle | None = None, future: asyncio.Future[Any] | None = None
    ) -> None:
        self.apply = apply  # None: stop after this group
        self.settle = settle
        self.future = future
        self.retries = 0


class Writer:
    """The thread that owns the connection and commits queued operations in groups (see the module docstring)."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], name: str, *, linger: float, clock: Callable[[], float]
    ) -> None:
        self._connect = connect
        self._name = name
        self._linger = linger
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._inbox: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._failing = False
        self._catch_up = False
        self.commits = 0

    async def start(self) -> None:
        """Start the thread; returns once the database is open and recovered, or raises why it is not."""
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(target=self._run, args=(started,), name="spool-writer", daemon=True)
        thread.start()
        await asyncio.wrap_future(started)
        self._thread = thread

    def post(self, apply: Apply, settle: Settle | None = None) -> None:
        """Queue a change for the next group; nobody waits for its commit (`settle` still runs after it)."""
        self._inbox.put(Op(apply, settle))

    async def call(self, apply: Apply, settle: Settle | None = None) -> Any:
        """Queue `apply` for the next group; its result once the group has committed. Raises SpoolError."""
        future = self._loop.create_future()
        self._inbox.put(Op(apply, settle, future))
        return await future

    async def stop(self) -> None:
        """Commit what is queued, close the connection and end the thread."""
        future = self._loop.create_future()
        self._inbox.put(Op(None, None, future))
        await future
        self._thread.join()

    def catch_up(self) -> None:
        """Checkpoint what is left in the WAL between the next two groups (after `Checkpointer` copied the bulk)."""
        self._catch_up = True

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as failure:
            started.set_exception(failure)
            return
        started.set_result(None)
        expected = 1
        while True:
            group = self._gather(expected)
            expected = max(1, sum(1 for op in group if op.future is not None))
            results, error, culprit = self._commit(conn, group)
            stopping = group[-1].apply is None
            retried = [] if error is None or stopping else _retry_posted(group, culprit)
            if stopping:
                _close(conn)
            try:
                self._loop.call_soon_threadsafe(_settle, [op for op in group if op not in retried], results, error)
            except RuntimeError:  # the event loop is closed: nobody is waiting any more
                pass
            if stopping:
                return
            if self._catch_up:
                self._catch_up = False
                _checkpoint(conn)
            if retried:
                time.sleep(_RETRY_PAUSE_SECONDS * 2 ** (max(op.retries for op in retried) - 1))
                for op in retried:
                    self._inbox.put(op)

    def _gather(self, expected: int) -> list[Op]:
        """Everything queued; lingers (up to `linger`) while fewer callers wait than in the previous group."""
        group = [self._inbox.get()]
        _drain(self._inbox, group)
        deadline = time.monotonic() + self._linger
        while group[-1].apply is not None and sum(1 for op in group if op.future is not None) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                group.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
            _drain(self._inbox, group)
        return group

    def _commit(self, conn: sqlite3.Connection, group: list[Op]) -> tuple[list[Any] | None, str | None, Op | None]:
        """(each op's result, None, None) once committed; else (None, why, the op that raised or None when the
        commit itself failed)."""
        now = self._clock()
        culprit: Op | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = []
            for op in group:
                culprit = op
                results.append(None if op.apply is None else op.apply(conn, now))
            culprit = None
            conn.execute("COMMIT")
        except Exception as error:  # disk full, I/O error, or a bug: the whole group is undone
            _rollback(conn)
            if not self._failing:
                _log.exception("Could not write to the spool in `%s`; appends are refused until it works.", self._name)
                self._failing = True
            return None, f"could not write to the spool in `{self._name}`: {error}", culprit
        if self._failing:
            _log.info("Writing to the spool in `%s` works again.", self._name)
            self._failing = False
        self.commits += 1
        return results, None, None


def _retry_posted(group: list[Op], culprit: Op | None) -> list[Op]:
    """The posted changes (`complete`, `dead_letter`, ...) a failed group undid, to be tried again: they record what
    already happened, so dropping them would deliver events twice after a restart. Not the change that failed
    (it would fail again), and each only a few times (a disk that stays full)."""
    retried = []
    for op in group:
        if op.future is None and op.apply is not None and op is not culprit and op.retries < _POST_RETRIES:
            op.retries += 1
            retried.append(op)
        elif op.future is None and op.apply is not None and op is not culprit:
            _log.error("Gave up on a spool change after %d failed groups; it is undone.", op.retries + 1)
    return retried


def _drain(inbox: queue.SimpleQueue[Op], group: list[Op]) -> None:
    while group[-1].apply is not None:
        try:
            group.append(inbox.get_nowait())
        except queue.Empty:
            return


def _settle(group: list[Op], results: list[Any] | None, error: str | None) -> None:
    """On the event loop: run each operation's bookkeeping, then wake its caller (if it still waits)."""
    for n, op in enumerate(group):
        result = None if results is None else results[n]
        if op.settle is not None:
            try:
                op.settle(result)
            except Exception:
                _log.exception("Unexpected error while settling a spool operation.")
        if op.future is not None and not op.future.done():
            if error is None:
                op.future.set_result(result)
            else:
                op.future.set_exception(SpoolError(error))


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        _log.exception("Could not roll back a failed spool transaction.")


def _checkpoint(conn: sqlite3.Connection) -> None:
    """A PASSIVE checkpoint on the writer's connection, outside any transaction; a failure is left to the next."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error:
        pass


def _close(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a short WAL makes the next open quick
    except sqlite3.Error:
        pass
    conn.close()


class Checkpointer:
    """The thread that checkpoints the WAL beside the writer (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        writer: Writer,
        wal: Path,
        *,
        interval: float,
        wal_limit_bytes: int,
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> None:
        self._connect = connect
        self._writer = writer
        self._wal = wal
        self._interval = interval
        self._limit = wal_limit_bytes
        self._on_checkpoint = on_checkpoint
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-checkpointer", daemon=True)
        self._failing = False
        self._shrink_pause = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Blocks until a checkpoint under way has finished: call it from a worker thread."""
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception:
            _log.exception("Could not open the spool's checkpointer; commits checkpoint the WAL themselves.")
            self._give_back()
            return
        seen = self._writer.commits
        try:
            while not self._stopping.wait(self._interval):
                if self._writer.commits == seen:
                    continue
                seen = self._writer.commits
                if not self._round(conn, seen):
                    seen = -1  # try again next time, whether or not more was committed meanwhile
        finally:
            conn.close()

    def _round(self, conn: sqlite3.Connection, seen: int) -> bool:
        """Checkpoint (at least) what the first `seen` commits wrote; False when it could not (another checkpoint
        under way, such as the operator CLI's, or an error)."""
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if not busy and frames == copied and _size(self._wal) > self._limit:
                self._shrink(conn)
        except sqlite3.Error:
            if not self._failing:
                _log.exception("Could not checkpoint the spool's WAL; trying again in %g s.", self._interval)
                self._failing = True
            return False
        self._failing = False
        if busy:
            return False
        self._writer.catch_up()
        if self._on_checkpoint is not None:
            self._on_checkpoint(seen)
        return True

    def _shrink(self, conn: sqlite3.Connection) -> None:
        """Empty an oversized WAL (TRUNCATE), unless a reader kept the last attempt from it: while a TRUNCATE waits
        for readers it holds the write lock, so after one that was kept waiting, leave it for a while."""
        if self._shrink_pause > 0:
            self._shrink_pause -= 1
            return
        if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            self._shrink_pause = _SHRINK_PAUSE_ROUNDS

    def _give_back(self) -> None:
        pages = _DEFAULT_AUTOCHECKPOINT_PAGES
        self._writer.post(lambda conn, now: conn.execute(f"PRAGMA wal_autocheckpoint = {pages}"))


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
