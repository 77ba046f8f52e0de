"""The writer thread of `SqliteSpool`: it owns the SQLite connection and commits queued operations in groups.

The event loop puts each operation on a thread-safe queue and carries on; the writer takes everything queued,
applies it in ONE transaction and commits (synchronous=FULL: the commit fsyncs the WAL), then settles each caller's
future on the event loop with `loop.call_soon_threadsafe`. See `spool_sqlite` for what this guarantees.

A group that fails (a full disk, an I/O error, a change that raises) is undone whole: each caller waiting on it gets
SpoolError; the changes nobody waits for (`post`) are queued again, a few times with a pause, all but the one that
raised, since they record what already happened (an event delivered, dead-lettered).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from intercom_sidecar.delivery.spool import SpoolError

__all__ = ["Apply", "Op", "Settle", "Writer"]

_log = logging.getLogger("intercom_sidecar.delivery.spool_sqlite")

Apply = Callable[[sqlite3.Connection, float], Any]
"""A change (or read) the writer thread applies inside a group's transaction; gets the group's clock time."""
Settle = Callable[[Any], None]
"""Bookkeeping run on the event loop once the group is settled: gets the result, or None if the group failed."""


_POST_RETRIES = 3
"""How often a posted change (nobody waits for it) is tried again after its group failed for another reason."""
_RETRY_PAUSE_SECONDS = 0.1
"""The writer's pause before the group that retries them (doubling each time): a full disk is given a moment."""


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


def _close(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a short WAL makes the next open quick
    except sqlite3.Error:
        pass
    conn.close()
