"""SqliteSpool: group commit, recovery, a kill -9 mid-stream, corruption, the directory, a second process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from intercom_sidecar.delivery import spool_files
from intercom_sidecar.delivery.dead_letters import DeadLetterStore
from intercom_sidecar.delivery.spool import DATABASE_NAME, DeadLetterFilter, SpoolError
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from tests.conftest import FakeClock
from tests.unit.delivery.test_spool import entry, spooled

pytestmark = pytest.mark.timeout(10)

REPO = Path(__file__).resolve().parents[3]


def sqlite_spool(directory: Path, clock: FakeClock, **settings: Any) -> SqliteSpool:
    settings = {"max_events": 1000, "max_bytes": 1_000_000, **settings}
    return SqliteSpool(directory, clock=clock.now, **settings)


async def test_concurrent_appends_share_few_commits(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock)
    await spool.open()
    before = spool.commits

    seqs = await asyncio.gather(*(spool.append([entry(f"m{n}")]) for n in range(200)))

    assert sorted(seq for [seq] in seqs if seq is not None) == list(range(1, 201))
    assert spool.commits - before <= 20
    await spool.close()


async def test_a_lone_append_commits_at_once(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock, commit_interval_seconds=60.0)  # lingering would time the test out
    await spool.open()

    for n in range(3):
        assert await spool.append([entry(f"m{n}")]) == [n + 1]

    await spool.close()


async def test_recovery_returns_what_is_still_pending_in_seq_order(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock)
    first = await spool.open()
    await spool.append([entry("a1", "a"), entry("b1", "b"), entry("a2", "a")])
    await spool.append([entry("b2", "b"), entry("a3", "a")])
    spool.complete([1, 4])
    spool.record_attempt(3, "intercom 500: oops")
    spool.dead_letter(2, reason="rejected", status=400, code="bad", attempts=1)
    spool.quarantine(5, "payload does not decode")
    await spool.append([entry("b3", "b")])
    await spool.close()

    reopened = sqlite_spool(tmp_path, clock)
    recovery = await reopened.open()

    assert (first.pending_events, first.pending_bytes) == (0, 0)
    assert (recovery.pending_events, recovery.pending_bytes) == (2, 20)
    assert await reopened.read_pending(0, 100) == [spooled(3, "a2", "a", attempts=1), spooled(6, "b3", "b")]
    assert await reopened.read_pending(3, 100) == [spooled(6, "b3", "b")]
    assert await reopened.read_pending(0, 1) == [spooled(3, "a2", "a", attempts=1)]
    assert (recovery.dead_letters, recovery.quarantined, recovery.moved_aside) == (1, 1, ())
    assert reopened.depth() == (2, 20)
    assert await reopened.append([entry("c1", "c")]) == [7]  # seqs go on; none is reused
    await reopened.close()


async def test_dedupe_survives_a_restart_and_expires_after_the_window(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock, dedupe_window_seconds=3600.0)
    await spool.open()
    await spool.append([entry(f"m{n}") for n in range(5)])
    spool.complete([1, 2, 3, 4, 5])
    await spool.close()

    spool = sqlite_spool(tmp_path, clock, dedupe_window_seconds=3600.0)
    await spool.open()
    assert await spool.append([entry("m0"), entry("m9")]) == [None, 6]
    await spool.close()

    clock.advance(3600.0 + 1.0)
    spool = sqlite_spool(tmp_path, clock, dedupe_window_seconds=3600.0)
    await spool.open()
    assert await spool.append([entry("m1")]) == [7]  # the first append of an open prunes expired ids
    await spool.close()

    with sqlite3.connect(tmp_path / DATABASE_NAME) as conn:
        assert sorted(row[0] for row in conn.execute("SELECT message_id FROM dedupe")) == ["m1"]
    conn.close()


_CHILD = """
import asyncio, sys, time
from pathlib import Path
from intercom_sidecar.delivery.spool import SpoolEntry
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool

async def appender(spool, worker):
    n = 0
    while True:
        batch = [SpoolEntry(f"w{worker}-{n + i}", f"u{worker}", b"x" * 700, "0" * 32, time.time())
                 for i in range(worker % 3 + 1)]
        n += len(batch)
        seqs = await spool.append(batch)
        sys.stdout.write("".join(f"{seq}\\n" for seq in seqs))
        sys.stdout.flush()

async def main():
    spool = SqliteSpool(Path(sys.argv[1]), max_events=10**9, max_bytes=10**12)
    await spool.open()
    await asyncio.gather(*(appender(spool, worker) for worker in range(8)))

asyncio.run(main())
"""


async def test_every_acked_event_survives_a_kill_9(tmp_path: Path, clock: FakeClock) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(tmp_path), cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    acked: list[int] = []
    while len(acked) < 500:
        line = await child.stdout.readline()
        assert line, "the child stopped before it was killed"
        acked.append(int(line))
    child.send_signal(signal.SIGKILL)
    rest = await child.stdout.read()  # acks it wrote before it died are promises too
    await child.wait()
    acked += [int(line) for line in rest.split(b"\n")[:-1]]  # a torn last line was never a whole ack
    with (tmp_path / f"{DATABASE_NAME}-wal").open("ab") as wal:
        wal.write(os.urandom(5000))  # a torn frame at the end of the WAL

    spool = sqlite_spool(tmp_path, clock)
    recovery = await spool.open()

    recovered = [event.seq for event in await spool.read_pending(0, 100_000)]
    assert len(recovered) == recovery.pending_events
    assert recovered == sorted(recovered)
    assert set(acked) <= set(recovered)
    assert recovery.moved_aside == ()
    await spool.close()


async def test_a_file_that_is_not_a_database_is_moved_aside(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / DATABASE_NAME).write_bytes(b"definitely not SQLite " * 500)
    spool = sqlite_spool(tmp_path, clock)

    with caplog.at_level(logging.WARNING):
        recovery = await spool.open()

    assert recovery.pending_events == 0
    assert [path.name for path in recovery.moved_aside] == ["spool.corrupt-20231114T221320Z.db"]
    assert recovery.moved_aside[0].read_bytes().startswith(b"definitely not SQLite")
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert await spool.append([entry("m1")]) == [1]
    await spool.close()


@pytest.mark.parametrize("page", [3, 4])  # today 3 makes reads fail, 4 only shows in quick_check's report
async def test_a_damaged_page_is_found_and_moved_aside(tmp_path: Path, clock: FakeClock, page: int) -> None:
    spool = sqlite_spool(tmp_path, clock)
    await spool.open()
    await spool.append([entry(f"m{n}", size=3000) for n in range(20)])
    await spool.close()
    with (tmp_path / DATABASE_NAME).open("r+b") as db:
        db.seek(4096 * page)
        db.write(b"\xa5" * 4096)
    (tmp_path / "spool.corrupt-20231114T221320Z.db").write_bytes(b"an earlier one")

    spool = sqlite_spool(tmp_path, clock)
    recovery = await spool.open()

    assert recovery.pending_events == 0
    assert [path.name for path in recovery.moved_aside] == ["spool.corrupt-20231114T221320Z-2.db"]
    await spool.close()


async def test_a_database_of_a_newer_schema_is_refused_not_moved(tmp_path: Path, clock: FakeClock) -> None:
    conn = sqlite3.connect(tmp_path / DATABASE_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    spool = sqlite_spool(tmp_path, clock)

    with pytest.raises(SpoolError, match="schema 99"):
        await spool.open()

    assert sorted(path.name for path in tmp_path.iterdir()) == [DATABASE_NAME, "spool.lock"]
    await spool.close()


async def test_a_directory_that_cannot_be_created_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "a-file").write_text("")
    directory = tmp_path / "a-file" / "spool"

    with pytest.raises(SpoolError, match=f"cannot use the spool directory `{directory}`"):
        await sqlite_spool(directory, clock).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
async def test_a_read_only_directory_is_a_clear_error(tmp_path: Path, clock: FakeClock) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(SpoolError, match=f"`{tmp_path}`"):
            await sqlite_spool(tmp_path, clock).open()
    finally:
        tmp_path.chmod(0o755)


async def test_two_sidecars_cannot_share_a_spool(tmp_path: Path, clock: FakeClock) -> None:
    first = sqlite_spool(tmp_path, clock)
    await first.open()

    with pytest.raises(SpoolError, match="another process holds"):
        await sqlite_spool(tmp_path, clock).open()

    await first.close()
    second = sqlite_spool(tmp_path, clock)
    await second.open()  # the lock went with the first
    await second.close()


async def test_a_failed_write_refuses_its_group_and_the_spool_carries_on(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    spool = sqlite_spool(tmp_path, clock)
    await spool.open()
    bad = entry("bad")
    object.__setattr__(bad, "payload", "text, not bytes")  # the STRICT table refuses it

    with caplog.at_level(logging.ERROR), pytest.raises(SpoolError, match="could not write to the spool"):
        await spool.append([bad])

    assert spool.depth() == (0, 0)
    assert await spool.append([entry("bad"), entry("good")]) == [1, 2]  # the failed group left nothing behind
    assert len(caplog.records) == 1
    await spool.close()


async def test_the_operator_store_works_beside_a_running_spool(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock)
    await spool.open()
    await spool.append([entry("m1"), entry("m2"), entry("m3")])
    spool.dead_letter(1, reason="intercom 404", status=404, code="not_found", attempts=1)
    spool.dead_letter(2, reason="intercom 422", status=422, code="invalid", attempts=1)
    assert len(await spool.list_dead_letters()) == 2  # queued after the dead letters: they are committed

    with DeadLetterStore(tmp_path) as store:
        assert [letter.seq for letter in store.find()] == [1, 2]
        assert store.get("m2") == (await spool.get_dead_letter("m2"))
        assert store.replay([1]) == [spooled(4, "m1")]
        assert store.purge(DeadLetterFilter(reason="422")) == 1

    assert spool.depth() == (1, 10)
    assert await spool.collect_replayed() == [spooled(4, "m1")]
    assert await spool.collect_replayed() == []
    assert spool.depth() == (2, 20)
    assert await spool.list_dead_letters() == []
    await spool.close()


async def test_the_operator_store_purges_in_short_transactions(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock, max_events=3000)
    await spool.open()
    seqs = await spool.append([entry(f"m{n}") for n in range(2500)])
    for seq in seqs:
        assert seq is not None
        spool.dead_letter(seq, reason="gone" if seq % 2 else "kept", status=None, code="", attempts=1)
    await spool.close()

    with DeadLetterStore(tmp_path) as store:
        assert store.purge(DeadLetterFilter(reason="gone")) == 1250
        assert len(store.find(limit=5000)) == 1250


async def test_the_operator_store_needs_an_existing_spool(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no spool database"):
        DeadLetterStore(tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_replays_made_while_stopped_come_back_with_recovery(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock)
    await spool.open()
    await spool.append([entry("m1")])
    spool.dead_letter(1, reason="x", status=None, code="", attempts=1)
    await spool.close()
    with DeadLetterStore(tmp_path) as store:
        store.replay([1])

    spool = sqlite_spool(tmp_path, clock)
    recovery = await spool.open()

    assert recovery.pending_events == 1
    assert await spool.read_pending(0, 10) == [spooled(2, "m1")]
    assert await spool.collect_replayed() == []  # read with the rest of the pending events
    await spool.close()


def dedupe_table(rows: list[tuple[str, float]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(spool_files.SCHEMA)
    conn.executemany("INSERT INTO dedupe (message_id, seen_at) VALUES (?, ?)", rows)
    return conn


def test_pruning_deletes_the_expired_head_up_to_the_first_id_seen_since() -> None:
    conn = dedupe_table([("a", 1.0), ("b", 2.0), ("c", 9.0), ("d", 3.0), ("e", 4.0)])

    assert spool_files.prune_dedupe(conn, 5.0) == 2

    assert [row[0] for row in conn.execute("SELECT message_id FROM dedupe ORDER BY rowid")] == ["c", "d", "e"]


def test_pruning_takes_at_most_its_limit_and_nothing_when_none_expired() -> None:
    conn = dedupe_table([(f"m{n}", 1.0) for n in range(10)])

    assert spool_files.prune_dedupe(conn, 0.5, limit=4) == 0
    assert spool_files.prune_dedupe(conn, 5.0, limit=4) == 4
    assert spool_files.prune_dedupe(conn, 5.0, limit=4) == 4
    assert spool_files.prune_dedupe(conn, 5.0, limit=4) == 2
    assert spool_files.prune_dedupe(conn, 5.0, limit=4) == 0
    assert conn.execute("SELECT count(*) FROM dedupe").fetchone()[0] == 0


async def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path, clock: FakeClock) -> None:
    spool = sqlite_spool(tmp_path, clock, max_bytes=10**8, checkpoint_interval_seconds=3600.0)
    await spool.open()
    wal = tmp_path / f"{DATABASE_NAME}-wal"

    for batch in range(5):  # 5 MiB: SQLite's own autocheckpoint would have reset the WAL at 4 MiB
        await spool.append([entry(f"m{batch}-{n}", size=8192) for n in range(128)])

    assert wal.stat().st_size > 5 * 1024 * 1024
    await spool.close()
    assert not wal.exists() or wal.stat().st_size == 0, "closing checkpoints everything"
    assert len(await reopened_pending(tmp_path, clock)) == 5 * 128


async def reopened_pending(directory: Path, clock: FakeClock) -> list[Any]:
    spool = sqlite_spool(directory, clock, max_bytes=10**8)
    recovery = await spool.open()
    events = await spool.read_pending(0, 10_000)
    assert recovery.pending_events == len(events)
    await spool.close()
    return events
