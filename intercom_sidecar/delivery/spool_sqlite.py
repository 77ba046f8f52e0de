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

Checkpoints: the writer's connection never checkpoints; a second thread, `Checkpointer`, copies the WAL into the
database twice a second with PASSIVE checkpoints that never block a commit, the writer catches up between
two groups, and the WAL stays under `wal_limit_bytes` (see `spool_writer`). Closing ends with a TRUNCATE
checkpoint, so the next open is quick.

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
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from intercom_sidecar.delivery import dead_letters, spool_files
from intercom_sidecar.delivery.dead_letter_payloads import KEEP, DeadLetterPayloads
from intercom_sidecar.delivery.spool import (
    DATABASE_NAME,
    DeadLetter,
    DeadLetterFilter,
    PendingLedger,
    Recovery,
    SpooledEvent,
    SpoolEntry,
    SpoolError,
)
from intercom_sidecar.delivery.spool_writer import Checkpointer, Writer
from intercom_sidecar.errors import ShuttingDownError

__all__ = ["SqliteSpool"]

_log = logging.getLogger(__name__)


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
        checkpoint_interval_seconds: float = 0.5,
        wal_limit_bytes: int = 32 * 1024 * 1024,
        full_retry_after_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        payloads: DeadLetterPayloads = KEEP,
    ) -> None:
        self._directory = directory
        self._payloads = payloads
        self._window = dedupe_window_seconds
        self._linger = commit_interval_seconds
        self._checkpoint_interval = checkpoint_interval_seconds
        self._wal_limit = wal_limit_bytes
        self._checkpointer: Checkpointer | None = None
        self._clock = clock
        self._ledger = PendingLedger(
            max_events=max_events, max_bytes=max_bytes, full_retry_after=full_retry_after_seconds
        )
        self._writer: Writer | None = None
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
        self._lock = spool_files.lock_directory(self._directory)
        recovered: list[Recovery] = []

        def connect() -> sqlite3.Connection:
            conn, recovery = spool_files.open_database(self._directory, self._clock())
            recovered.append(recovery)
            return conn

        writer = Writer(connect, str(self._directory), linger=self._linger, clock=self._clock)
        try:
            await writer.start()
        except BaseException:
            self._lock.close()
            raise
        self._writer = writer
        database = self._directory / DATABASE_NAME
        self._checkpointer = Checkpointer(
            lambda: spool_files.connect_checkpointer(database),
            writer,
            database.with_name(f"{DATABASE_NAME}-wal"),
            interval=self._checkpoint_interval,
            wal_limit_bytes=self._wal_limit,
        )
        self._checkpointer.start()
        recovery = recovered[0]
        self._ledger.add(recovery.pending_events, recovery.pending_bytes)
        _log.info(
            "Recovered %d pending events (%d bytes) from the spool in `%s`.",
            recovery.pending_events,
            recovery.pending_bytes,
            self._directory,
        )
        return recovery

    async def append(self, entries: Sequence[SpoolEntry]) -> list[int | None]:
        writer = self._open_writer()
        if not entries:
            return []
        batch = tuple(entries)
        size = self._ledger.reserve(batch)

        def settle(seqs: list[int | None] | None) -> None:
            self._ledger.release(len(batch), size)
            if seqs is None:  # the group failed: nothing stored
                return
            if None not in seqs:  # the usual case, no duplicate: all of it stored
                self._ledger.add(len(batch), size)
                return
            stored = [entry for seq, entry in zip(seqs, batch, strict=True) if seq is not None]
            self._ledger.add(len(stored), sum(len(entry.payload) for entry in stored))

        result: list[int | None] = await writer.call(lambda conn, now: self._insert(conn, batch, now), settle)
        return result

    async def read_pending(self, after_seq: int, limit: int) -> list[SpooledEvent]:
        events: list[SpooledEvent] = await self._open_writer().call(
            lambda conn, now: spool_files.read_pending(conn, after_seq, limit)
        )
        return events

    async def seen(self, message_ids: Sequence[str]) -> set[str]:
        ids, cutoff = tuple(message_ids), self._clock() - self._window
        found: set[str] = await self._open_writer().call(lambda conn, now: spool_files.seen(conn, ids, cutoff))
        return found

    def complete(self, seqs: Sequence[int]) -> None:
        done = tuple(seqs)
        if done:  # the delete reports what it freed: no extra read per delivered event
            self._open_writer().post(lambda conn, now: spool_files.delete_pending(conn, done), self._free)

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
        at = self._clock()
        self._freeing(
            (seq,),
            lambda conn, now: dead_letters.move_to_dead_letters(
                conn, seq, reason=reason, status=status, code=code, attempts=attempts, now=at, payloads=self._payloads
            ),
        )

    def quarantine(self, seq: int, reason: str) -> None:
        at = self._clock()
        self._freeing((seq,), lambda conn, now: spool_files.quarantine(conn, seq, reason, at))

    def _freeing(self, seqs: tuple[int, ...], change: Callable[[sqlite3.Connection, float], object]) -> None:
        """Queue `change`, which takes `seqs` out of pending; once committed, the bounds free what it took."""

        def apply(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
            freed = spool_files.pending_size(conn, seqs)
            change(conn, now)
            return freed

        self._open_writer().post(apply, self._free)

    def _free(self, freed: tuple[int, int] | None) -> None:
        """Once a change that took events out of pending has committed: free their room (None: the group failed,
        so nothing was taken out)."""
        if freed is not None:
            self._ledger.free(*freed)

    def depth(self) -> tuple[int, int]:
        return self._ledger.depth()

    async def sync(self) -> None:
        await self._open_writer().call(lambda conn, now: None)  # the writer settles in order: all before it too

    def room(self) -> tuple[int, int]:
        return self._ledger.room()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:  # before the writer's own TRUNCATE checkpoint at close
            await asyncio.to_thread(self._checkpointer.stop)
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
            lambda conn, now: dead_letters.replay(
                conn, wanted, announce=False, payloads=self._payloads, skip_unopenable=True
            ),
            self._adopt,
        )
        return events

    async def purge(self, where: DeadLetterFilter) -> int:
        purged: int = await self._open_writer().call(lambda conn, now: dead_letters.purge(conn, where))
        return purged

    async def collect_replayed(self) -> list[SpooledEvent]:
        events: list[SpooledEvent] = await self._open_writer().call(
            lambda conn, now: spool_files.collect_replayed(conn), self._adopt
        )
        return events

    def _adopt(self, events: list[SpooledEvent] | None) -> None:
        if events:
            self._ledger.add(len(events), sum(len(event.payload) for event in events))

    def _open_writer(self) -> Writer:
        if self._closed:
            raise ShuttingDownError()
        if self._writer is None:
            raise SpoolError(f"the spool in `{self._directory}` is not open")
        return self._writer

    def _insert(self, conn: sqlite3.Connection, batch: Sequence[SpoolEntry], now: float) -> list[int | None]:
        """Runs on the writer thread: dedupe and insert; prunes expired dedupe rows about once a second."""
        cutoff = now - self._window
        seqs = spool_files.insert_new(conn, batch, now) if len(batch) > 1 else None
        if seqs is None:
            seqs = [spool_files.insert_one(conn, entry, now, cutoff) for entry in batch]
        mono = time.monotonic()
        if mono >= self._next_prune:
            pruned = spool_files.prune_dedupe(conn, cutoff)
            self._next_prune = mono if pruned == spool_files.PRUNE_ROWS else mono + 1.0
        return seqs
