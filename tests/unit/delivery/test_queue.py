"""SendQueue: per-key FIFO, no head-of-line blocking across keys, a hard bound, closing."""

from __future__ import annotations

import asyncio

import pytest

from intercom_sidecar.delivery.queue import SendQueue
from intercom_sidecar.errors import QueueFullError, ShuttingDownError

pytestmark = pytest.mark.timeout(5)


def queue(max_items: int = 100) -> SendQueue[str]:
    return SendQueue(max_items, full_retry_after=2.5)


async def test_one_key_is_handed_out_in_order_one_at_a_time() -> None:
    q = queue()
    for item in ("a1", "a2", "a3"):
        q.put("a", item)

    assert await q.get() == ("a", "a1")
    with pytest.raises(LookupError):
        q.get_nowait()  # a2 waits until a1 is finished
    q.task_done("a")
    assert await q.get() == ("a", "a2")
    q.task_done("a")
    assert q.get_nowait() == ("a", "a3")
    q.task_done("a")
    assert len(q) == 0


async def test_other_keys_are_not_blocked_by_an_item_in_flight() -> None:
    q = queue()
    q.put("a", "a1")
    q.put("a", "a2")
    q.put("b", "b1")
    q.put("c", "c1")
    q.put("b", "b2")

    assert await q.get() == ("a", "a1")  # a1 stays in flight
    assert await q.get() == ("b", "b1")
    assert await q.get() == ("c", "c1")
    q.task_done("b")
    assert await q.get() == ("b", "b2")
    with pytest.raises(LookupError):
        q.get_nowait()
    q.task_done("a")
    assert await q.get() == ("a", "a2")


async def test_get_waits_for_a_put() -> None:
    q = queue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    q.put("a", "a1")
    assert await waiter == ("a", "a1")


async def test_len_counts_queued_and_in_flight_items() -> None:
    q = queue()
    q.put("a", "a1")
    q.put("a", "a2")
    assert len(q) == 2
    await q.get()
    assert len(q) == 2
    q.task_done("a")
    assert len(q) == 1


async def test_full_queue_raises_with_retry_after() -> None:
    q = queue(max_items=2)
    q.put("a", "a1")
    q.put("b", "b1")

    with pytest.raises(QueueFullError) as caught:
        q.put("c", "c1")

    assert caught.value.retry_after == 2.5
    assert str(caught.value) == "the send queue is full (2 events)"
    assert len(q) == 2


async def test_in_flight_items_count_against_the_bound_until_done() -> None:
    q = queue(max_items=1)
    q.put("a", "a1")
    await q.get()
    with pytest.raises(QueueFullError):
        q.put("b", "b1")
    q.task_done("a")
    q.put("b", "b1")
    assert await q.get() == ("b", "b1")


async def test_closed_queue_refuses_new_items_but_hands_out_queued_ones() -> None:
    q = queue()
    q.put("a", "a1")
    q.close()

    assert q.closed
    with pytest.raises(ShuttingDownError) as caught:
        q.put("b", "b1")
    assert caught.value.retry_after == 1.0
    assert str(caught.value) == "the sidecar is shutting down"
    assert await q.get() == ("a", "a1")


async def test_closed_wins_over_full() -> None:
    q = queue(max_items=1)
    q.put("a", "a1")
    q.close()
    with pytest.raises(ShuttingDownError):
        q.put("a", "a2")


async def test_wait_idle() -> None:
    q = queue()
    await asyncio.wait_for(q.wait_idle(), timeout=1)  # empty: idle at once

    q.put("a", "a1")
    q.put("b", "b1")
    idle = asyncio.create_task(q.wait_idle())
    for key in ("a", "b"):
        await q.get()
        await asyncio.sleep(0)
        assert not idle.done()
        q.task_done(key)
    await asyncio.wait_for(idle, timeout=1)


async def test_a_key_is_fresh_after_its_items_finish() -> None:
    q = queue()
    q.put("a", "a1")
    await q.get()
    q.task_done("a")
    q.put("a", "a2")
    assert q.get_nowait() == ("a", "a2")
