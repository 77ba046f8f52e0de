"""The spool's writer thread: a failed group undoes every change in it; the posted ones (nobody waits for them) are
tried again, but not the change that failed, and not forever."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from intercom_sidecar.delivery.spool import SpoolError
from intercom_sidecar.delivery.spool_writer import Writer

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


async def held_then_failed(writer: Writer, *posted: Any) -> None:
    """Queue `posted` changes and a failing call behind a change that holds the writer, so all share one group."""
    gate = threading.Event()
    writer.post(lambda conn, now: gate.wait(5))
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
    gate, holding = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection, now: float) -> None:
        holding.set()
        gate.wait(5)

    writer.post(hold)
    await asyncio.to_thread(holding.wait, 5)  # the writer is in a group of its own: the next two make one group
    writer.post(lambda conn, now: conn.execute("INSERT INTO missing VALUES (1)"), settled.append)  # posted, failing
    good = asyncio.ensure_future(writer.call(lambda conn, now: conn.execute("INSERT INTO done VALUES (2)").rowcount))
    await asyncio.sleep(0)
    gate.set()

    with pytest.raises(SpoolError):
        await good  # it shared the failed group; its caller hears so and decides
    assert await count(writer) == 0
    assert settled == [None], "the failing change was settled as undone, once"
