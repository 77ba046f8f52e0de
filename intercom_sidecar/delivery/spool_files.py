"""The SQLite spool's files and SQL: the schema, the lock, opening and recovering the database (corrupt files are
moved aside, never a crash loop), and the statements the writer thread runs. Used by `spool_sqlite` only."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TypeVar

from intercom_sidecar.delivery import dead_letters
from intercom_sidecar.delivery.spool import (
    BUSY_TIMEOUT_MS,
    DATABASE_NAME,
    SCHEMA_VERSION,
    Recovery,
    SpooledEvent,
    SpoolEntry,
    SpoolError,
)

__all__ = [
    "COLLECT_LIMIT",
    "LOCK_NAME",
    "PRUNE_ROWS",
    "SCHEMA",
    "collect_replayed",
    "connect_checkpointer",
    "delete_pending",
    "insert_new",
    "insert_one",
    "lock_directory",
    "open_database",
    "pending_size",
    "prune_dedupe",
    "quarantine",
    "read_pending",
    "seen",
]

_log = logging.getLogger("intercom_sidecar.delivery.spool_sqlite")

LOCK_NAME = "spool.lock"
PRUNE_ROWS = 1_000
"""Most dedupe rows one group commit prunes (about 1.5 ms); a full chunk and the next group prunes again."""
_IN_CHUNK = 500
_V = TypeVar("_V")

SCHEMA = """
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
    code TEXT NOT NULL,
    call_type TEXT NOT NULL DEFAULT '',     -- identify, track, ...: kept in clear, whatever the payload_form
    payload_form TEXT NOT NULL DEFAULT 'kept'  -- kept | dropped | aes256gcm (INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS)
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


DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
"""The spool holds events (personal data): a directory the sidecar creates, and every file in it, is its user's
alone. SQLite gives the -wal and -shm files the database file's mode."""


def lock_directory(directory: Path) -> IO[bytes]:
    """Create the directory if needed (mode 0700) and hold its lock file; SpoolError names the directory when it
    cannot."""
    try:
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
        lock = os.fdopen(os.open(directory / LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE), "ab")
    except OSError as error:
        raise SpoolError(f"cannot use the spool directory `{directory}`: {error}") from error
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        lock.close()
        raise SpoolError(f"another process holds the spool in `{directory}`") from error
    return lock


def open_database(directory: Path, now: float) -> tuple[sqlite3.Connection, Recovery]:
    """Open (or create) and recover the database; a corrupt one is moved aside and replaced by a fresh one."""
    path = directory / DATABASE_NAME
    try:
        return connect_and_recover(path, ())
    except CorruptError as corrupt:
        moved = move_aside(path, now)
        _log.warning(
            "The spool database `%s` is corrupt (%s); moved it aside to `%s` and started an empty spool.",
            path,
            corrupt,
            moved[0] if moved else path,
        )
        try:
            return connect_and_recover(path, moved)
        except CorruptError as again:
            raise SpoolError(f"cannot create a spool database in `{directory}`: {again}") from again


def connect_and_recover(path: Path, moved_aside: tuple[Path, ...]) -> tuple[sqlite3.Connection, Recovery]:
    try:
        _create_private(path)
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        raise classify(error, path) from error
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise SpoolError(f"the spool database `{path}` cannot use WAL mode")
        conn.execute("PRAGMA synchronous = FULL")
        # Commits never checkpoint: the spool's checkpointer thread does, on a connection of its own
        # (`spool_writer.Checkpointer`), so no group commit waits for the database file's writes and fsync.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        # Deleted rows (delivered events, dead letters' pending rows, purged dead letters) are overwritten with
        # zeros, so no payload stays behind in free pages (Debian's SQLite does this by default; others do not).
        conn.execute("PRAGMA secure_delete = ON")
        problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise CorruptError(" ".join(problems[:3]).replace("\n", " "))
        migrate(conn, path)
        recovery = recover_pending(conn, moved_aside)
    except sqlite3.Error as error:
        conn.close()
        raise classify(error, path) from error
    except BaseException:
        conn.close()
        raise
    return conn, recovery


CHECKPOINTER_BUSY_TIMEOUT_MS = 50
"""How long the checkpointer's TRUNCATE may wait for readers (commits wait behind it meanwhile)."""


def connect_checkpointer(path: Path) -> sqlite3.Connection:
    """The checkpointer's own connection to the database the writer has opened (and recovered)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Short: a TRUNCATE checkpoint waits for readers while holding the write lock, so every commit waits too.
        conn.execute(f"PRAGMA busy_timeout = {CHECKPOINTER_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        conn.close()
        raise
    return conn


_MIGRATIONS = {
    1: "ALTER TABLE dead_letters ADD COLUMN call_type TEXT NOT NULL DEFAULT '';"
    " ALTER TABLE dead_letters ADD COLUMN payload_form TEXT NOT NULL DEFAULT 'kept';",
}
"""The change from each older schema version to the next one."""


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        return
    if version not in _MIGRATIONS:
        raise SpoolError(f"the spool database `{path}` has schema {version}; this version knows {SCHEMA_VERSION}")
    steps = " ".join(_MIGRATIONS[v] for v in range(version, SCHEMA_VERSION))
    conn.executescript(f"BEGIN IMMEDIATE; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")


def recover_pending(conn: sqlite3.Connection, moved_aside: tuple[Path, ...]) -> Recovery:
    """How much is pending (the events are read later, in windows). (STRICT tables and quick_check vouch for each
    row's types.)"""
    conn.execute("BEGIN IMMEDIATE")
    events, size = conn.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM pending").fetchone()
    conn.execute("DELETE FROM replayed")  # every pending event is read from the spool anyway
    dead = dead_letters.count_dead_letters(conn)
    (quarantined,) = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    conn.execute("COMMIT")
    return Recovery(events, size, quarantined=quarantined, moved_aside=moved_aside, dead_letters=dead)


def read_pending(conn: sqlite3.Connection, after_seq: int, limit: int) -> list[SpooledEvent]:
    """Pending rows above `after_seq` in seq order; they are no longer announced as replayed (read once)."""
    rows = conn.execute(
        "SELECT seq, message_id, user_key, payload, trace_id, accepted_at, attempts FROM pending"
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    ).fetchall()
    if rows:
        conn.execute("DELETE FROM replayed WHERE seq > ? AND seq <= ?", (after_seq, rows[-1][0]))
    return [SpooledEvent(*row) for row in rows]


def seen(conn: sqlite3.Connection, message_ids: Sequence[str], cutoff: float) -> set[str]:
    """Those of `message_ids` seen since `cutoff` (the dedupe window)."""
    found: set[str] = set()
    for chunk, marks in _in_chunks(message_ids):
        rows = conn.execute(
            f"SELECT message_id FROM dedupe WHERE message_id IN ({marks}) AND seen_at >= ?", (*chunk, cutoff)
        )
        found.update(row[0] for row in rows)
    return found


def delete_pending(conn: sqlite3.Connection, seqs: Sequence[int]) -> tuple[int, int]:
    """Delete the pending events `seqs`; how many there were, and their payload bytes."""
    events = size = 0
    for seq in seqs:
        row = conn.execute("DELETE FROM pending WHERE seq = ? RETURNING length(payload)", (seq,)).fetchone()
        if row is not None:
            events += 1
            size += row[0]
    return events, size


def pending_size(conn: sqlite3.Connection, seqs: Sequence[int]) -> tuple[int, int]:
    """How many of `seqs` are pending, and their payload bytes."""
    events = size = 0
    for chunk, marks in _in_chunks(seqs):
        found, found_size = conn.execute(
            f"SELECT count(*), coalesce(sum(length(payload)), 0) FROM pending WHERE seq IN ({marks})", chunk
        ).fetchone()
        events += found
        size += found_size
    return events, size


def _in_chunks(values: Sequence[_V]) -> Iterator[tuple[Sequence[_V], str]]:
    """`values` in chunks small enough for one `IN (...)`, each with its `?, ?, ...` placeholders."""
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def insert_new(conn: sqlite3.Connection, batch: Sequence[SpoolEntry], now: float) -> list[int | None] | None:
    """The fast path for a batch of ids never seen (the usual case); None if any id was seen (nothing inserted).

    A few multi-row INSERTs (`_row_chunks`) rather than one `executemany` row by row: per row, executemany ran the
    statement anew (its end-of-statement work, the AUTOINCREMENT bookkeeping) and released and took back the GIL
    around each step, and every take-back could wait for the event loop's thread to hand the GIL over."""
    conn.execute("SAVEPOINT batch")
    chunks = _row_chunks(len(batch))
    inserted = start = 0
    for rows in chunks:
        params: list[object] = []
        for entry in batch[start : start + rows]:
            params += (entry.message_id, now)
        inserted += conn.execute(_insert_sql(_INSERT_DEDUPE, "(?,?)", rows), params).rowcount
        start += rows
    if inserted != len(batch):
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        return None
    # This connection holds the write lock, so the seqs after the largest ever used are ours to take.
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pending'").fetchone()
    first = seq = (row[0] if row else 0) + 1
    start = 0
    for rows in chunks:
        params = []
        for entry in batch[start : start + rows]:
            params += (seq, entry.message_id, entry.user_key, _blob(entry.payload), entry.trace_id, entry.accepted_at)
            seq += 1
        conn.execute(_insert_sql(_INSERT_PENDING, "(?,?,?,?,?,?)", rows), params)
        start += rows
    conn.execute("RELEASE batch")
    return list(range(first, seq))


_INSERT_DEDUPE = "INSERT OR IGNORE INTO dedupe (message_id, seen_at) VALUES "
_INSERT_PENDING = "INSERT INTO pending (seq, message_id, user_key, payload, trace_id, accepted_at) VALUES "
_MAX_ROWS_PER_INSERT = 128
"""Rows in one multi-row INSERT: 768 parameters for `pending`, far below SQLite's limit (32,766)."""


def _row_chunks(count: int) -> list[int]:
    """`count` rows as chunks of `_MAX_ROWS_PER_INSERT`, the rest in powers of two (64, 32, ..., 1): so at most
    eight distinct statements per table, and the connection's statement cache keeps them all prepared."""
    chunks = [_MAX_ROWS_PER_INSERT] * (count // _MAX_ROWS_PER_INSERT)
    rest, rows = count % _MAX_ROWS_PER_INSERT, _MAX_ROWS_PER_INSERT // 2
    while rest:
        if rest >= rows:
            chunks.append(rows)
            rest -= rows
        rows //= 2
    return chunks


@functools.cache
def _insert_sql(head: str, values: str, rows: int) -> str:
    return head + ",".join([values] * rows)


def _blob(payload: bytes) -> bytearray:
    """The payload as the sqlite3 module binds it fastest: it binds a bytearray as a BLOB directly, but looks for an
    adapter for every bytes object first (a failed attribute lookup, several times the copy's cost)."""
    return bytearray(payload)


def insert_one(conn: sqlite3.Connection, entry: SpoolEntry, now: float, cutoff: float) -> int | None:
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
        (entry.message_id, entry.user_key, _blob(entry.payload), entry.trace_id, entry.accepted_at),
    ).lastrowid


def quarantine(conn: sqlite3.Connection, seq: int, reason: str, now: float) -> int:
    moved: int = conn.execute(
        "INSERT INTO quarantine (seq, message_id, user_key, payload, trace_id, accepted_at, attempts, outcomes,"
        " quarantined_at, reason)"
        " SELECT seq, message_id, user_key, payload, trace_id, accepted_at, attempts, outcomes, ?, ?"
        " FROM pending WHERE seq = ?",
        (now, reason, seq),
    ).rowcount
    conn.execute("DELETE FROM pending WHERE seq = ?", (seq,))
    return moved


COLLECT_LIMIT = 10_000
"""Most replayed events one `collect_replayed` hands back (the rest wait for the next call)."""


def collect_replayed(conn: sqlite3.Connection) -> list[SpooledEvent]:
    rows = conn.execute(
        "SELECT p.seq, p.message_id, p.user_key, p.payload, p.trace_id, p.accepted_at, p.attempts"
        " FROM replayed AS r JOIN pending AS p ON p.seq = r.seq ORDER BY p.seq LIMIT ?",
        (COLLECT_LIMIT,),
    ).fetchall()
    if len(rows) < COLLECT_LIMIT:
        conn.execute("DELETE FROM replayed")  # all handed out (and announcements of events no longer pending)
    else:
        conn.execute("DELETE FROM replayed WHERE seq <= ?", (rows[-1][0],))
    return [SpooledEvent(*row) for row in rows]


def prune_dedupe(conn: sqlite3.Connection, cutoff: float, limit: int = PRUNE_ROWS) -> int:
    """Delete up to `limit` of the oldest dedupe rows seen before `cutoff`, stopping at the first row seen since;
    how many were deleted. It runs inside a group commit about once a second, so it is kept short: one indexed
    read when nothing has expired (the usual case), else one statement over at most `limit` rows (the writer
    thread then neither builds a row object per dedupe row nor takes the GIL back once per row)."""
    oldest = conn.execute("SELECT seen_at FROM dedupe ORDER BY rowid LIMIT 1").fetchone()
    if oldest is None or oldest[0] >= cutoff:
        return 0
    deleted: int = conn.execute(
        "DELETE FROM dedupe WHERE rowid <= (SELECT max(id) FROM"
        " (SELECT rowid AS id FROM dedupe ORDER BY rowid LIMIT ?1) WHERE id < coalesce("
        "(SELECT id FROM (SELECT rowid AS id, seen_at FROM dedupe ORDER BY rowid LIMIT ?1) WHERE seen_at >= ?2"
        " ORDER BY id LIMIT 1), 9223372036854775807))",
        (limit, cutoff),
    ).rowcount
    return deleted


def move_aside(path: Path, now: float) -> tuple[Path, ...]:
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


def _create_private(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite does (it would use 0644), so that it and the -wal and
    -shm files SQLite creates beside it (with the same mode) are readable by the sidecar's user only. A database
    made by an older version (0644) is made private too, with its -wal and -shm files."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        for existing in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(existing, FILE_MODE)
    except OSError as error:
        raise SpoolError(f"cannot create the spool database `{path}`: {error}") from error


def classify(error: sqlite3.Error, path: Path) -> Exception:
    if getattr(error, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return CorruptError(str(error))
    return SpoolError(f"cannot use the spool database `{path}`: {error}")


class CorruptError(Exception):
    """The database file is damaged: it is moved aside, never a reason to stop."""
