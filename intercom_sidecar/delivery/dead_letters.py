"""Dead letters in the spool's SQLite database: `DeadLetterStore` for the operator CLI, and the SQL it shares with
the spool's writer thread.

Each SQL function runs inside a transaction that its caller opened and commits, so an operator's command and the
sidecar's own writes never interleave halfway.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from intercom_sidecar.delivery.dead_letter_payloads import DROPPED, KEEP, DeadLetterPayloadError, DeadLetterPayloads
from intercom_sidecar.delivery.spool import (
    BUSY_TIMEOUT_MS,
    DATABASE_NAME,
    SCHEMA_VERSION,
    Attempt,
    DeadLetter,
    DeadLetterFilter,
    SpooledEvent,
    SpoolError,
)

__all__ = [
    "DeadLetterStore",
    "count_dead_letters",
    "decode_outcomes",
    "get_dead_letter",
    "list_dead_letters",
    "move_to_dead_letters",
    "purge",
    "replay",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_PURGE_CHUNK = 1000

_COLUMNS = (
    "seq, message_id, user_key, payload, trace_id, accepted_at, dead_at, reason, status, code, attempts, outcomes,"
    " call_type, payload_form"
)


class DeadLetterStore:
    """The dead letters of a spool directory, for the operator CLI; safe to use while the sidecar runs.

    Opens the existing database in its own connection and keeps each command in one short transaction. Events
    it replays are also announced in the `replayed` table, so a running sidecar picks them up with
    `Spool.collect_replayed` (and a stopped one with its next recovery). `payloads` opens encrypted dead letters
    (it needs the key they were encrypted with); without it, only kept payloads can be replayed or read.
    """

    def __init__(self, directory: Path, payloads: DeadLetterPayloads = KEEP) -> None:
        self._payloads = payloads
        path = directory / DATABASE_NAME
        if not path.is_file():
            raise SpoolError(f"no spool database in `{directory}`")
        try:
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA synchronous = FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as error:
            raise SpoolError(f"cannot open the spool database in `{directory}`: {error}") from error
        if version != SCHEMA_VERSION:
            self._conn.close()
            raise SpoolError(f"the spool in `{directory}` has schema {version}; this version reads {SCHEMA_VERSION}")

    def find(self, where: DeadLetterFilter | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters matching `where` (all when None), in seq order, at most `limit`."""
        return list_dead_letters(self._conn, where or DeadLetterFilter(), limit)

    def get(self, message_id: str) -> DeadLetter | None:
        """The latest dead letter of `message_id`, if any."""
        return get_dead_letter(self._conn, message_id)

    def payload_of(self, letter: DeadLetter) -> bytes:
        """The event of `letter` as accepted; DeadLetterPayloadError if it was dropped or the key does not open it."""
        return self._payloads.open(letter.message_id, letter.payload_form, letter.payload)

    def replay(self, seqs: Sequence[int]) -> list[SpooledEvent]:
        """Move dead letters back to pending (new seqs, after every pending event); unknown seqs and payload-free
        dead letters are skipped. DeadLetterPayloadError (nothing moved) if an encrypted one cannot be opened."""
        return self._write(lambda: replay(self._conn, seqs, announce=True, payloads=self._payloads))

    def purge(self, where: DeadLetterFilter) -> int:
        """Delete the dead letters matching `where`; how many were deleted.

        Deletes 1000 per transaction, so a running sidecar never waits long for the write lock.
        """
        purged = 0
        while deleted := self._write(lambda: purge(self._conn, where, _PURGE_CHUNK)):
            purged += deleted
        return purged

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> DeadLetterStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, change: Callable[[], _T]) -> _T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = change()
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result


def move_to_dead_letters(
    conn: sqlite3.Connection,
    seq: int,
    *,
    reason: str,
    status: int | None,
    code: str,
    attempts: int,
    now: float,
    payloads: DeadLetterPayloads = KEEP,
) -> bool:
    """Move pending `seq` to the dead letters, with its recorded outcomes and its payload as `payloads` seals it;
    False if it was not pending."""
    row = conn.execute("SELECT message_id, payload FROM pending WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        return False
    message_id, payload = row
    form, stored = payloads.seal(message_id, payload)
    conn.execute(
        "INSERT INTO dead_letters (seq, message_id, user_key, payload, trace_id, accepted_at, attempts, outcomes,"
        " dead_at, reason, status, code, call_type, payload_form)"
        " SELECT seq, message_id, user_key, ?, trace_id, accepted_at, ?, outcomes, ?, ?, ?, ?, ?, ?"
        " FROM pending WHERE seq = ?",
        (stored, attempts, now, reason, status, code, payloads.describe(payload), form, seq),
    )
    conn.execute("DELETE FROM pending WHERE seq = ?", (seq,))
    return True


def list_dead_letters(conn: sqlite3.Connection, where: DeadLetterFilter, limit: int) -> list[DeadLetter]:
    condition, params = _where(where)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE {condition} ORDER BY seq LIMIT ?", (*params, limit)
    ).fetchall()
    return [_dead_letter(row) for row in rows]


def get_dead_letter(conn: sqlite3.Connection, message_id: str) -> DeadLetter | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE message_id = ? ORDER BY seq DESC LIMIT 1", (message_id,)
    ).fetchone()
    return None if row is None else _dead_letter(row)


def count_dead_letters(conn: sqlite3.Connection) -> int:
    count: int = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return count


def replay(
    conn: sqlite3.Connection,
    seqs: Sequence[int],
    *,
    announce: bool,
    payloads: DeadLetterPayloads = KEEP,
    skip_unopenable: bool = False,
) -> list[SpooledEvent]:
    """Move dead letters back to pending, in their old seq order, with new seqs and no attempts.

    `announce` also lists each new seq in the `replayed` table, for a running sidecar's `collect_replayed`.
    Payload-free dead letters stay where they are; an encrypted one is decrypted with `payloads` (pending events
    are in clear), and one that cannot be raises DeadLetterPayloadError (the caller rolls back), or with
    `skip_unopenable` stays a dead letter and is logged (for the sidecar's writer thread, which must not fail the
    other operations of its group).
    """
    events = []
    for old_seq in sorted(set(seqs)):
        row = conn.execute(
            "SELECT message_id, user_key, payload, trace_id, accepted_at, payload_form FROM dead_letters WHERE seq = ?",
            (old_seq,),
        ).fetchone()
        if row is None or row[5] == DROPPED:
            continue
        message_id, user_key, stored, trace_id, accepted_at, form = row
        try:
            payload = payloads.open(message_id, form, stored)
        except DeadLetterPayloadError as error:
            if not skip_unopenable:
                raise
            _log.warning("Not replaying a dead letter: %s.", error)
            continue
        seq = conn.execute(
            "INSERT INTO pending (message_id, user_key, payload, trace_id, accepted_at) VALUES (?, ?, ?, ?, ?)",
            (message_id, user_key, payload, trace_id, accepted_at),
        ).lastrowid
        assert seq is not None
        conn.execute("DELETE FROM dead_letters WHERE seq = ?", (old_seq,))
        if announce:
            conn.execute("INSERT INTO replayed (seq) VALUES (?)", (seq,))
        events.append(SpooledEvent(seq, message_id, user_key, payload, trace_id, accepted_at, 0))
    return events


def purge(conn: sqlite3.Connection, where: DeadLetterFilter, limit: int = -1) -> int:
    """Delete the dead letters matching `where` (the oldest `limit` of them; -1: all); how many were deleted."""
    condition, params = _where(where)
    return conn.execute(
        f"DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM dead_letters WHERE {condition} ORDER BY seq LIMIT ?)",
        (*params, limit),
    ).rowcount


def _where(where: DeadLetterFilter) -> tuple[str, list[Any]]:
    """The SQL condition of `where` (every field given must match), and its parameters."""
    conditions = (
        (where.since, "dead_at >= ?"),
        (where.until, "dead_at < ?"),
        (where.reason, "instr(lower(reason), lower(?)) > 0"),
        (where.user_key, "user_key = ?"),
        (where.message_id, "message_id = ?"),
        (where.after_seq, "seq > ?"),
    )
    given: list[tuple[Any, str]] = [(value, clause) for value, clause in conditions if value is not None]
    clauses, params = [clause for _, clause in given], [value for value, _ in given]
    if where.message_ids is not None:
        clauses.append(f"message_id IN ({','.join('?' * len(where.message_ids))})")
        params.extend(where.message_ids)
    return " AND ".join(clauses) or "1", params


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    (seq, message_id, user_key, payload, trace_id, accepted_at, dead_at, reason, status, code, attempts, outcomes,
     call_type, payload_form) = row  # fmt: skip
    return DeadLetter(
        seq=seq,
        message_id=message_id,
        user_key=user_key,
        payload=payload,
        trace_id=trace_id,
        accepted_at=accepted_at,
        dead_at=dead_at,
        reason=reason,
        status=status,
        code=code,
        attempts=attempts,
        outcomes=decode_outcomes(outcomes),
        call_type=call_type,
        payload_form=payload_form,
    )


def decode_outcomes(text: str) -> tuple[Attempt, ...]:
    """The `outcomes` column: a JSON array of [at, outcome] pairs, appended by `record_attempt`."""
    return tuple(Attempt(float(at), str(outcome)) for at, outcome in json.loads(text))
