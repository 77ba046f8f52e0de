"""The spool's writer thread: a failed group undoes every change in it; the posted ones (nobody waits for them) are
tried again, but not the change that failed, and not forever. Its checkpointer keeps the WAL short without a commit
ever checkpointing."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from intercom_sidecar.delivery.spool import SpoolError
from intercom_sidecar.delivery.spool_files import connect_checkpointer
from intercom_sidecar.delivery.spool_writer import Checkpointer, Writer

pytestmark = pytest.mark.timeout(10)


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE done (n INTEGER)")
    return conn


@pytest.fixture
async def writer() -> AsyncIterator[Writer]:
    writer = Writer(connect, "test", linger=0.0, clock=time.time)
    await writer.start()
    yield writer
    await writer.stop()


async def hold(writer: Writer) -> threading.Event:
    """Hold the writer in a group of its own until the returned gate is set: what is queued meanwhile goes
    together into the next group."""
    entered, gate = threading.Event(), threading.Event()

    def held(conn: sqlite3.Connection, now: float) -> None:
        entered.set()
        gate.wait(5)

    writer.post(held)
    assert await asyncio.to_thread(entered.wait, 5)
    return gate


async def held_then_failed(writer: Writer, *posted: Any) -> None:
    """Queue `posted` changes and a failing call while the writer is held, so they share one group."""
    gate = await hold(writer)
    for apply, settle in posted:
        writer.post(apply, settle)
    failing = asyncio.ensure_future(writer.call(lambda conn, now: conn.execute("INSERT INTO missing VALUES (1)")))
    await asyncio.sleep(0)  # let the call queue itself (synchronisation with the event loop, not with time)
    gate.set()
    with pytest.raises(SpoolError, match="could not write to the spool"):
        await failing


async def count(writer: Writer) -> int:
    found: int = await writer.call(lambda conn, now: conn.execute("SELECT count(*) FROM done").fetchone()[0])
    return found


async def test_a_posted_change_undone_with_a_failed_group_is_applied_again(writer: Writer) -> None:
    applied = asyncio.Event()
    results: list[Any] = []

    def settle(result: Any) -> None:
        results.append(result)
        applied.set()

    await held_then_failed(writer, (lambda conn, now: conn.execute("INSERT INTO done VALUES (1)").rowcount, settle))
    await applied.wait()

    assert results == [1], "settled once, with the result of the retried change"
    assert await count(writer) == 1


async def test_the_change_that_failed_is_not_tried_again(writer: Writer) -> None:
    settled: list[Any] = []
    gate = await hold(writer)
    writer.post(lambda conn, now: conn.execute("INSERT INTO missing VALUES (1)"), settled.append)  # posted, failing
    good = asyncio.ensure_future(writer.call(lambda conn, now: conn.execute("INSERT INTO done VALUES (2)").rowcount))
    await asyncio.sleep(0)
    gate.set()

    with pytest.raises(SpoolError):
        await good  # it shared the failed group; its caller hears so and decides
    assert await count(writer) == 0
    assert settled == [None], "the failing change was settled as undone, once"


# The checkpointer -------------------------------------------------------------------------------------------


class Rounds:
    """The checkpointer's rounds; `covering(commits)` waits (in a worker thread) for one that copied them all."""

    def __init__(self) -> None:
        self._covered = 0
        self._changed = threading.Condition()

    def __call__(self, commits: int) -> None:
        with self._changed:
            self._covered = commits
            self._changed.notify_all()

    async def covering(self, commits: int) -> None:
        def wait() -> None:
            with self._changed:
                assert self._changed.wait_for(lambda: self._covered >= commits, timeout=5)

        await asyncio.to_thread(wait)


def file_database(path: Path) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE IF NOT EXISTS blobs (b BLOB)")
        return conn

    return connect


async def write_mebibyte(writer: Writer) -> None:
    await writer.call(lambda conn, now: conn.executemany("INSERT INTO blobs VALUES (?)", [(b"x" * 8192,)] * 128))


async def checkpointed(
    tmp_path: Path, wal_limit_bytes: int, connect: Callable[[], sqlite3.Connection] | None = None
) -> AsyncIterator[tuple[Writer, Checkpointer, Rounds, Path]]:
    database = tmp_path / "spool.db"
    writer = Writer(file_database(database), "test", linger=0.0, clock=time.time)
    await writer.start()
    rounds = Rounds()
    checkpointer = Checkpointer(
        connect or (lambda: sqlite3.connect(database, isolation_level=None, check_same_thread=False)),
        writer,
        tmp_path / "spool.db-wal",
        interval=0.001,
        wal_limit_bytes=wal_limit_bytes,
        on_checkpoint=rounds,
    )
    checkpointer.start()
    yield writer, checkpointer, rounds, tmp_path / "spool.db-wal"
    await asyncio.to_thread(checkpointer.stop)
    await writer.stop()


async def test_the_checkpointer_keeps_the_wal_short_while_commits_never_checkpoint(tmp_path: Path) -> None:
    async for writer, _, rounds, wal in checkpointed(tmp_path, wal_limit_bytes=1 << 30):
        sizes = []
        for _ in range(8):
            await write_mebibyte(writer)
            await rounds.covering(writer.commits)
            sizes.append(wal.stat().st_size)

        assert await writer.call(lambda conn, now: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 0
        assert max(sizes) < 2.5 * 1024 * 1024, "each write started the WAL again from its beginning"
        assert await writer.call(lambda conn, now: conn.execute("SELECT count(*) FROM blobs").fetchone()[0]) == 1024


async def test_without_the_checkpointer_the_wal_would_grow(tmp_path: Path) -> None:
    writer = Writer(file_database(tmp_path / "spool.db"), "test", linger=0.0, clock=time.time)
    await writer.start()
    for _ in range(8):
        await write_mebibyte(writer)

    assert (tmp_path / "spool.db-wal").stat().st_size > 8 * 1024 * 1024, "commits alone never checkpoint"
    await writer.stop()


async def test_a_wal_over_its_limit_is_emptied(tmp_path: Path) -> None:
    async for writer, _, rounds, wal in checkpointed(tmp_path, wal_limit_bytes=64 * 1024):
        await write_mebibyte(writer)
        await rounds.covering(writer.commits)

        assert wal.stat().st_size == 0


async def test_a_checkpointer_that_cannot_connect_gives_commits_their_checkpoints_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    async for writer, checkpointer, _, _ in checkpointed(tmp_path, wal_limit_bytes=1 << 30, connect=refuse):
        await asyncio.to_thread(checkpointer.stop)  # it gave up at once; its last word was queued before it ended

        assert await writer.call(lambda conn, now: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 1000
        assert "commits checkpoint the WAL themselves" in caplog.text


async def test_a_reader_holding_an_old_snapshot_does_not_hold_up_commits(tmp_path: Path) -> None:
    """An operator's `sqlite3` shell (or a backup tool) in a read transaction while the WAL is over its limit: a
    TRUNCATE waiting for it would hold the write lock for the whole busy timeout, and every commit with it."""
    database = tmp_path / "spool.db"
    connect = functools.partial(connect_checkpointer, database)
    async for writer, _, rounds, _ in checkpointed(tmp_path, wal_limit_bytes=64 * 1024, connect=connect):
        await writer.call(lambda conn, now: conn.execute("INSERT INTO blobs VALUES (x'00')"))
        reader = sqlite3.connect(database, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM blobs").fetchone()
        try:
            await write_mebibyte(writer)  # the WAL passes its limit while the reader pins it
            slowest = 0.0
            for _ in range(20):
                started = time.monotonic()
                await writer.call(lambda conn, now: conn.execute("INSERT INTO blobs VALUES (x'01')").rowcount)
                slowest = max(slowest, time.monotonic() - started)
                await rounds.covering(writer.commits)  # a checkpointer round ran after each commit
        finally:
            reader.execute("COMMIT")
            reader.close()

        assert slowest < 1.0, f"a commit waited {slowest:.2f} s behind the checkpointer"
