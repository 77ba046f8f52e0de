"""Intercom's rate limit: nothing before an announced reset, and replicas that share one app's budget."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import QueueConfig, RetryConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, start_app

pytestmark = pytest.mark.e2e

Ack = event_pb2.Ack
FAST_RETRIES = RetryConfig(initial_backoff_seconds=0.01, max_backoff_seconds=0.05, max_elapsed_seconds=60.0)


def identify(message_id: str, user_id: str) -> event_pb2.Event:
    return event_pb2.Event(message_id=message_id, user_id=user_id, identify=event_pb2.Identify())


async def test_after_a_429_nothing_is_sent_before_the_announced_reset(tmp_path: Path) -> None:
    async with FakeIntercom(limit_per_window=1000, window_seconds=1.0) as fake_intercom:
        sidecar = await start_app(fake_intercom, tmp_path / "spool", retry=FAST_RETRIES)
        try:
            await _storm(sidecar, fake_intercom)
        finally:
            await sidecar.close()


async def _storm(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    fake_intercom.faults.throttle_for(1.2)
    reset = math.ceil(fake_intercom.faults.throttle_until or 0)
    events = [identify(f"m{n}", f"user-{n}") for n in range(12)]
    response = await sidecar.stub.Send(
        service_pb2.SendRequest(events=events), metadata=(("x-ack-mode", "delivered"),), timeout=60
    )
    assert {ack.status for ack in response.acks} == {Ack.STATUS_DELIVERED}
    throttled = [entry for entry in fake_intercom.ledger if entry.status == 429]
    assert throttled, "the storm was met"
    first_answer = min(entry.at for entry in throttled)
    # Requests already on their way when the first 429 came back may still arrive; after that, none until the reset.
    early = [entry.at for entry in fake_intercom.ledger if first_answer + 0.2 < entry.at < reset]
    assert early == []
    assert len(throttled) <= 4, "one 429 per worker at most: no storm of retries"


@pytest.fixture
async def small_budget() -> AsyncIterator[FakeIntercom]:
    """One Intercom app allowing 30 calls per 1-second window."""
    async with FakeIntercom(limit_per_window=30, window_seconds=1.0) as fake:
        yield fake


async def test_three_replicas_share_one_budget(small_budget: FakeIntercom, tmp_path: Path) -> None:
    replicas = [
        await start_app(small_budget, tmp_path / f"spool-{n}", retry=FAST_RETRIES, queue=QueueConfig(workers=4))
        for n in range(3)
    ]
    try:
        for n, replica in enumerate(replicas):
            events = [identify(f"r{n}-m{i}", f"r{n}-user-{i}") for i in range(40)]
            response = await replica.stub.Send(service_pb2.SendRequest(events=events), timeout=30)
            assert {ack.status for ack in response.acks} == {Ack.STATUS_ACCEPTED}
        await asyncio.gather(*(replica.app.wait_idle() for replica in replicas))
    finally:
        for replica in replicas:
            await replica.close()
    per_window = Counter(math.floor(entry.at) for entry in small_budget.ledger)
    counts = [count for _, count in sorted(per_window.items())]
    assert max(counts) <= 31, f"requests per window: {counts}"  # the limit + 5%
    busy = counts[1:-1]  # the first and last windows are partly idle (start-up, the tail of the work)
    assert busy and min(busy) >= 27, f"at least 90% of the budget used while busy: {counts}"
    throttled = sum(1 for entry in small_budget.ledger if entry.status == 429)
    assert throttled <= 6, f"{throttled} answers were 429"
    assert len(small_budget.state.contacts) == 120
