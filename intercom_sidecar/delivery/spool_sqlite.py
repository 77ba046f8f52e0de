"""`SqliteSpool`: the durable spool, one SQLite database (WAL, synchronous=FULL) in the spool directory.

Thread model: sqlite3 objects are not async, so one writer thread owns the connection. The event loop puts each
operation on a thread-safe queue and carries on; `append` awaits a future the writer resolves with
`loop.call_soon_threadsafe` once the transaction holding it has committed. The bounds (`PendingLedger`) are
kept on the event loop, so `append` can refuse a batch before it queues anything.

Group commit: the writer takes everything queued, applies it in ONE transaction, and commits (with
synchronous=FULL the commit fsyncs the WAL). Operations arriving meanwhile make up the next group, so at low load
a lone append waits for one fsync and at high load groups grow by themselves. To gather concurrent callers into
fewer fsyncs, the writer lingers, at most `commit_interval_seconds`, until as many appends as in the previous
group have arrived; after a group of one it never lingers, so a quiet sidecar pays no extra latency.

What a crash can lose: nothing acked. An append's future resolves only after its COMMIT returned, and a
commit in WAL mode with synchronous=FULL is on disk (fsync) before it returns. `complete`, `record_attempt`,
`dead_letter` and `quarantine` ride in the next group without being waited for: a crash before that commit
undoes them, so the event is recovered and delivered again (Intercom dedupes data events by created_at), or an
attempt goes uncounted. A torn last WAL frame fails its checksum and SQLite ignores it; it can only hold a group
whose appends were never acked.

Files in the directory: `spool.db` (and its -wal, -shm), `spool.lock` (held with flock while a sidecar has the
spool open, so two sidecars never deliver the same events), `spool.corrupt-<time>.db` for files moved aside.
The operator CLI opens the same database with `DeadLetterStore`, also while the sidecar runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from intercom_sidecar.delivery import dead_letters
from intercom_sidecar.delivery.spool import (
    BUSY_TIMEOUT_MS,
    DATABASE_NAME,
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterFilter,
    PendingLedger,
    Recovery,
    SpooledEvent,
    SpoolEntry,
    SpoolError,
)
from intercom_sidecar.errors import ShuttingDownError

__all__ = ["SqliteSpool"]

_log = logging.getLogger(__name__)

_LOCK_NAME = "spool.lock"
_PRUNE_ROWS = 10_000

_SCHEMA = """
CREATE TABLE pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused, even after a delete
    message_id TEXT NOT NULL,
    user_key TEXT NOT NULL,
    payload BLOB NOT NULL,
    trace_id TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcomes TEXT NOT NULL DEFAULT '[]'     -- JSON [[at, outcome], ...] from record_attempt
) STRICT;
-- Message ids seen within the dedupe window; rowid order is seen_at order, so pruning reads from the front.
CREATE TABLE dedupe (message_id TEXT NOT NULL UNIQUE, seen_at REAL NOT NULL) STRICT;
CREATE TABLE dead_letters (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    user_key TEXT NOT NULL,
    payload BLOB NOT NULL,
    trace_id TEXT NOT NULL,
    accepted_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    outcomes TEXT NOT NULL,
    dead_at REAL NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER,
    code TEXT NOT NULL
) STRICT;
CREATE INDEX dead_letters_by_message_id ON dead_letters (message_id);
CREATE INDEX dead_letters_by_dead_at ON dead_letters (dead_at);
-- Events whose payload the caller could not decode (`quarantine`), kept for a human to look at.
CREATE TABLE quarantine (
    seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL, user_key TEXT NOT NULL, payload BLOB NOT NULL,
    trace_id TEXT NOT NULL, accepted_at REAL NOT NULL, attempts INTEGER NOT NULL, outcomes TEXT NOT NULL,
    quarantined_at REAL NOT NULL, reason TEXT NOT NULL
) STRICT;
-- Seqs another process (the operator CLI) put back into pending, until a running sidecar collects them.
CREATE TABLE replayed (seq INTEGER PRIMARY KEY) STRICT;
"""


class SqliteSpool:
    """The durable `Spool`. Bounds count pending events and their payload bytes; a full spool refuses a whole batch."""

    def __init__(
        self,
        directory: Path,
        *,
        max_events: int,
        max_bytes: int,
        dedupe_window_seconds: float = 86400.0,
        commit_interval_seconds: float = 0.002,
        full_retry_after_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = directory
        self._window = dedupe_window_seconds
        self._linger = commit_interval_seconds
        self._clock = clock
        self._ledger = PendingLedger(
            max_events=max_events, max_bytes=max_bytes, full_retry_after=full_retry_after_seconds
        )
        self._writer: _Writer | None = None
        self._lock: IO[bytes] | None = None
        self._closed = False
        self._next_prune = 0.0

    @property
    def commits(self) -> int:
        """Group transactions committed so far (for tests and metrics); one fsync each when they wrote anything."""
        return 0 if self._writer is None else self._writer.commits

    async def open(self) -> Recovery:
        if self._writer is not None or self._closed:
            raise SpoolError(f"the spool in `{self._directory}` was already opened")
        self._lock = _lock_directory(self._directory)
        recovered: list[Recovery] = []

        def connect() -> sqlite3.Connection:
            conn, recovery = _open_database(self._directory, self._clock())
            recovered.append(recovery)
            return conn

        writer = _Writer(connect, str(self._directory), linger=self._linger, clock=self._clock)
        try:
            await writer.start()
        except BaseException:
            self._lock.close()
            raise
        self._writer = writer
        recovery = recovered[0]
        for event in recovery.pending:
            self._ledger.add(event.seq, len(event.payload))
        events, size = self._ledger.depth()
        _log.info("Recovered %d pending events (%d bytes) from the spool in `%s`.", events, size, self._directory)
        return recovery

    async def append(self, entries: Sequence[SpoolEntry]) -> list[int | None]:
        writer = self._open_writer()
        if not entries:
            return []
        batch = tuple(entries)
        size = self._ledger.reserve(batch)

        def settle(seqs: list[int | None] | None) -> None:
            self._ledger.release(len(batch), size)
            for seq, entry in zip(seqs or (), batch, strict=False):
                if seq is not None:
                    self._ledger.add(seq, len(entry.payload))

        result: list[int | None] = await writer.call(lambda conn, now: self._insert(conn, batch, now), settle)
        return result

    def complete(self, seqs: Sequence[int]) -> None:
        writer = self._open_writer()
        done = [seq for seq in seqs if self._ledger.remove(seq)]
        if done:
            writer.post(lambda conn, now: conn.executemany("DELETE FROM pending WHERE seq = ?", [(s,) for s in done]))

    def record_attempt(self, seq: int, outcome: str) -> None:
        writer = self._open_writer()
        at = self._clock()
        writer.post(
            lambda conn, now: conn.execute(
                "UPDATE pending SET attempts = attempts + 1, outcomes = json_insert(outcomes, '$[#]', json_array(?, ?))"
                " WHERE seq = ?",
                (at, outcome, seq),
            )
        )

    def dead_letter(self, seq: int, *, reason: str, status: int | None, code: str, attempts: int) -> None:
        writer = self._open_writer()
        self._ledger.remove(seq)
        at = self._clock()
        writer.post(
            lambda conn, now: dead_letters.move_to_dead_letters(
                conn, seq, reason=reason, status=status, code=code, attempts=attempts, now=at
            )
        )

    def quarantine(self, seq: int, reason: str) -> None:
        writer = self._open_writer()
        self._ledger.remove(seq)
        at = self._clock()
        writer.post(lambda conn, now: _quarantine(conn, seq, reason, at))

    def depth(self) -> tuple[int, int]:
        return self._ledger.depth()

    def room(self) -> tuple[int, int]:
        return self._ledger.room()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            await self._writer.stop()
        if self._lock is not None:
            self._lock.close()  # releases the flock

    async def list_dead_letters(self, where: DeadLetterFilter | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        found: list[DeadLetter] = await self._open_writer().call(
            lambda conn, now: dead_letters.list_dead_letters(conn, where or DeadLetterFilter(), limit)
        )
        return found

    async def get_dead_letter(self, message_id: str) -> DeadLetter | None:
        found: DeadLetter | None = await self._open_writer().call(
            lambda conn, now: dead_letters.get_dead_letter(conn, message_id)
        )
        return found

    async def replay(self, seqs: Sequence[int]) -> list[SpooledEvent]:
        wanted = tuple(seqs)
        events: list[SpooledEvent] = await self._open_writer().call(
            lambda conn, now: dead_letters.replay(conn, wanted, announce=False), self._adopt
        )
        return events

    async def purge(self, where: DeadLetterFilter) -> int:
        purged: int = await self._open_writer().call(lambda conn, now: dead_letters.purge(conn, where))
        return purged

    async def collect_replayed(self) -> list[SpooledEvent]:
        events: list[SpooledEvent] = await self._open_writer().call(lambda conn, now: _collect(conn), self._adopt)
        return events

    def _adopt(self, events: list[SpooledEvent] | None) -> None:
        for event in events or ():
            self._ledger.add(event.seq, len(event.payload))

    def _open_writer(self) -> _Writer:
        if self._closed:
            raise ShuttingDownError()
        if self._writer is None:
            raise SpoolError(f"the spool in `{self._directory}` is not open")
        return self._writer

    def _insert(self, conn: sqlite3.Connection, batch: Sequence[SpoolEntry], now: float) -> list[int | None]:
        """Runs on the writer thread: dedupe and insert; prunes expired dedupe rows about once a second."""
        cutoff = now - self._window
        seqs = _insert_new(conn, batch, now) if len(batch) > 1 else None
        if seqs is None:
            seqs = [_insert_one(conn, entry, now, cutoff) for entry in batch]
        mono = time.monotonic()
        if mono >= self._next_prune:
            pruned = _prune_dedupe(conn, cutoff)
            self._next_prune = mono if pruned == _PRUNE_ROWS else mono + 1.0
        return seqs


_Apply = Callable[[sqlite3.Connection, float], Any]
"""A change (or read) the writer thread applies inside a group's transaction; gets the group's clock time."""
_Settle = Callable[[Any], None]
"""Bookkeeping run on the event loop once the group is settled: gets the result, or None if the group failed."""


class _Op:
    __slots__ = ("apply", "future", "settle")

    def __init__(
        self, apply: _Apply | None, settle: _Settle | None = None, future: asyncio.Future[Any] | None = None
    ) -> None:
        self.apply = apply  # None: stop after this group
        self.settle = settle
        self.future = future


class _Writer:
    """The thread that owns the connection and commits queued operations in groups (see the module docstring)."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], name: str, *, linger: float, clock: Callable[[], float]
    ) -> None:
        self._connect = connect
        self._name = name
        self._linger = linger
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._inbox: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._failing = False
        self.commits = 0

    async def start(self) -> None:
        """Start the thread; returns once the database is open and recovered, or raises why it is not."""
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(target=self._run, args=(started,), name="spool-writer", daemon=True)
        thread.start()
        await asyncio.wrap_future(started)
        self._thread = thread

    def post(self, apply: _Apply) -> None:
        """Queue a change for the next group; nobody waits for its commit."""
        self._inbox.put(_Op(apply))

    async def call(self, apply: _Apply, settle: _Settle | None = None) -> Any:
        """Queue `apply` for the next group; its result once the group has committed. Raises SpoolError."""
        future = self._loop.create_future()
        self._inbox.put(_Op(apply, settle, future))
        return await future

    async def stop(self) -> None:
        """Commit what is queued, close the connection and end the thread."""
        future = self._loop.create_future()
        self._inbox.put(_Op(None, None, future))
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
            results, error = self._commit(conn, group)
            stopping = group[-1].apply is None
            if stopping:
                _close(conn)
            try:
                self._loop.call_soon_threadsafe(_settle, group, results, error)
            except RuntimeError:  # the event loop is closed: nobody is waiting any more
                pass
            if stopping:
                return

    def _gather(self, expected: int) -> list[_Op]:
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

    def _commit(self, conn: sqlite3.Connection, group: list[_Op]) -> tuple[list[Any] | None, str | None]:
        now = self._clock()
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [None if op.apply is None else op.apply(conn, now) for op in group]
            conn.execute("COMMIT")
        except Exception as error:  # disk full, I/O error, or a bug: the whole group is undone
            _rollback(conn)
            if not self._failing:
                _log.exception("Could not write to the spool in `%s`; appends are refused until it works.", self._name)
                self._failing = True
            return None, f"could not write to the spool in `{self._name}`: {error}"
        if self._failing:
            _log.info("Writing to the spool in `%s` works again.", self._name)
            self._failing = False
        self.commits += 1
        return results, None


def _drain(inbox: queue.SimpleQueue[_Op], group: list[_Op]) -> None:
    while group[-1].apply is not None:
        try:
            group.append(inbox.get_nowait())
        except queue.Empty:
            return


def _settle(group: list[_Op], results: list[Any] | None, error: str | None) -> None:
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


def _lock_directory(directory: Path) -> IO[bytes]:
    """Create the directory if needed and hold its lock file; SpoolError names the directory when it cannot."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
        lock = (directory / _LOCK_NAME).open("ab")
    except OSError as error:
        raise SpoolError(f"cannot use the spool directory `{directory}`: {error}") from error
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        lock.close()
        raise SpoolError(f"another process holds the spool in `{directory}`") from error
    return lock


def _open_database(directory: Path, now: float) -> tuple[sqlite3.Connection, Recovery]:
    """Open (or create) and recover the database; a corrupt one is moved aside and replaced by a fresh one."""
    path = directory / DATABASE_NAME
    try:
        return _connect_and_recover(path, ())
    except _CorruptError as corrupt:
        moved = _move_aside(path, now)
        _log.warning(
            "The spool database `%s` is corrupt (%s); moved it aside to `%s` and started an empty spool.",
            path,
            corrupt,
            moved[0] if moved else path,
        )
        try:
            return _connect_and_recover(path, moved)
        except _CorruptError as again:
            raise SpoolError(f"cannot create a spool database in `{directory}`: {again}") from again


def _connect_and_recover(path: Path, moved_aside: tuple[Path, ...]) -> tuple[sqlite3.Connection, Recovery]:
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        raise _classify(error, path) from error
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise SpoolError(f"the spool database `{path}` cannot use WAL mode")
        conn.execute("PRAGMA synchronous = FULL")
        problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise _CorruptError(" ".join(problems[:3]).replace("\n", " "))
        _migrate(conn, path)
        recovery = _recover(conn, moved_aside)
    except sqlite3.Error as error:
        conn.close()
        raise _classify(error, path) from error
    except BaseException:
        conn.close()
        raise
    return conn, recovery


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version != 0:
        raise SpoolError(f"the spool database `{path}` has schema {version}; this version knows {SCHEMA_VERSION}")
    conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")


def _recover(conn: sqlite3.Connection, moved_aside: tuple[Path, ...]) -> Recovery:
    """Every pending row in seq order. (STRICT tables and quick_check vouch for each row's types.)"""
    conn.execute("BEGIN IMMEDIATE")
    pending = conn.execute(
        "SELECT seq, message_id, user_key, payload, trace_id, accepted_at, attempts FROM pending ORDER BY seq"
    ).fetchall()
    conn.execute("DELETE FROM replayed")  # recovery hands back every pending event anyway
    dead = dead_letters.count_dead_letters(conn)
    (quarantined,) = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    conn.execute("COMMIT")
    return Recovery(
        tuple(SpooledEvent(*row) for row in pending),
        quarantined=quarantined,
        moved_aside=moved_aside,
        dead_letters=dead,
    )


def _insert_new(conn: sqlite3.Connection, batch: Sequence[SpoolEntry], now: float) -> list[int | None] | None:
    """The fast path for a batch of ids never seen (the usual case): two executemany; None if any id was seen."""
    conn.execute("SAVEPOINT batch")
    if conn.executemany(
        "INSERT OR IGNORE INTO dedupe (message_id, seen_at) VALUES (?, ?)", [(e.message_id, now) for e in batch]
    ).rowcount != len(batch):
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        return None
    # This connection holds the write lock, so the seqs after the largest ever used are ours to take.
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pending'").fetchone()
    first = (row[0] if row else 0) + 1
    conn.executemany(
        "INSERT INTO pending (seq, message_id, user_key, payload, trace_id, accepted_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(seq, e.message_id, e.user_key, e.payload, e.trace_id, e.accepted_at) for seq, e in enumerate(batch, first)],
    )
    conn.execute("RELEASE batch")
    return list(range(first, first + len(batch)))


def _insert_one(conn: sqlite3.Connection, entry: SpoolEntry, now: float, cutoff: float) -> int | None:
    """Insert one entry; None if its message id was seen since `cutoff` (the earlier event is kept)."""
    if not conn.execute(
        "INSERT OR IGNORE INTO dedupe (message_id, seen_at) VALUES (?, ?)", (entry.message_id, now)
    ).rowcount:
        (seen_at,) = conn.execute("SELECT seen_at FROM dedupe WHERE message_id = ?", (entry.message_id,)).fetchone()
        if seen_at >= cutoff:
            return None
        # Seen before the window: a new event. Delete and insert, so rowid order stays seen_at order.
        conn.execute("DELETE FROM dedupe WHERE message_id = ?", (entry.message_id,))
        conn.execute("INSERT INTO dedupe (message_id, seen_at) VALUES (?, ?)", (entry.message_id, now))
    return conn.execute(
        "INSERT INTO pending (message_id, user_key, payload, trace_id, accepted_at) VALUES (?, ?, ?, ?, ?)",
        (entry.message_id, entry.user_key, entry.payload, entry.trace_id, entry.accepted_at),
    ).lastrowid


def _quarantine(conn: sqlite3.Connection, seq: int, reason: str, now: float) -> int:
    moved: int = conn.execute(
        "INSERT INTO quarantine (seq, message_id, user_key, payload, trace_id, accepted_at, attempts, outcomes,"
        " quarantined_at, reason)"
        " SELECT seq, message_id, user_key, payload, trace_id, accepted_at, attempts, outcomes, ?, ?"
        " FROM pending WHERE seq = ?",
        (now, reason, seq),
    ).rowcount
    conn.execute("DELETE FROM pending WHERE seq = ?", (seq,))
    return moved


def _collect(conn: sqlite3.Connection) -> list[SpooledEvent]:
    rows = conn.execute(
        "SELECT p.seq, p.message_id, p.user_key, p.payload, p.trace_id, p.accepted_at, p.attempts"
        " FROM replayed AS r JOIN pending AS p ON p.seq = r.seq ORDER BY p.seq"
    ).fetchall()
    conn.execute("DELETE FROM replayed")
    return [SpooledEvent(*row) for row in rows]


def _prune_dedupe(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete up to _PRUNE_ROWS of the oldest dedupe rows seen before `cutoff`; how many were deleted."""
    rows = conn.execute("SELECT rowid, seen_at FROM dedupe ORDER BY rowid LIMIT ?", (_PRUNE_ROWS,)).fetchall()
    last = None
    for rowid, seen_at in rows:
        if seen_at >= cutoff:
            break
        last = rowid
    if last is None:
        return 0
    return conn.execute("DELETE FROM dedupe WHERE rowid <= ?", (last,)).rowcount


def _move_aside(path: Path, now: float) -> tuple[Path, ...]:
    """Rename the database and its -wal/-shm to spool.corrupt-<time>.db*; the renamed database comes first."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base = path.with_name(f"spool.corrupt-{stamp}.db")
    n = 1
    while base.exists():
        n += 1
        base = path.with_name(f"spool.corrupt-{stamp}-{n}.db")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            target = base.with_name(base.name + suffix)
            try:
                source.rename(target)
            except OSError as error:
                raise SpoolError(f"cannot move the corrupt spool database `{source}` aside: {error}") from error
            moved.append(target)
    return tuple(moved)


def _classify(error: sqlite3.Error, path: Path) -> Exception:
    if getattr(error, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return _CorruptError(str(error))
    return SpoolError(f"cannot use the spool database `{path}`: {error}")


class _CorruptError(Exception):
    """The database file is damaged: it is moved aside, never a reason to stop."""
