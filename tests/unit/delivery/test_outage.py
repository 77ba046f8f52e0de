"""A ten-minute Intercom outage on a fake clock (no real waiting): every event is delivered once it ends."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from intercom_sidecar.config import QueueConfig, RetryConfig
from intercom_sidecar.delivery.pipeline import Delivered, Outcome, Pipeline
from intercom_sidecar.errors import RetryableError
from intercom_sidecar.mapping.plan import ContactRef, CreateDataEvent, Plan
from tests.conftest import FakeClock

OUTAGE_SECONDS = 600.0


class DownForTenMinutes:
    """Answers 503 until the outage is over, then takes everything (and records the order per user)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.ends_at = clock.now() + OUTAGE_SECONDS
        self.failures = 0
        self.delivered: dict[str, list[int]] = {}

    async def send(self, plan: Plan) -> None:
        await asyncio.sleep(0)
        if self.clock.now() < self.ends_at:
            self.failures += 1
            raise RetryableError("Service Unavailable", status=503, code="service_unavailable")
        step = plan.steps[0]
        assert isinstance(step, CreateDataEvent)
        self.delivered.setdefault(str(step.contact.external_id), []).append(int(step.body["n"]))


async def test_nothing_is_lost_in_a_ten_minute_outage(clock: FakeClock) -> None:
    sender = DownForTenMinutes(clock)
    retry = RetryConfig(initial_backoff_seconds=0.5, max_backoff_seconds=60.0, max_elapsed_seconds=3 * 3600.0)
    pipeline = Pipeline(sender, QueueConfig(max_events=1000, workers=4), retry, clock=clock, rng=random.Random(7))
    pipeline.start()
    outcomes: dict[int, Outcome] = {}
    all_done = asyncio.Event()

    def done(n: int) -> Callable[[Outcome], None]:
        def record(outcome: Outcome) -> None:
            outcomes[n] = outcome
            if len(outcomes) == 40:
                all_done.set()

        return record

    for n in range(40):
        user = f"user-{n % 5}"
        plan = Plan(steps=(CreateDataEvent(contact=ContactRef(external_id=user, email=None), body={"n": n}),))
        pipeline.submit(user, plan, done(n))
    await asyncio.wait_for(all_done.wait(), timeout=10)
    await pipeline.shutdown(0)

    assert all(isinstance(outcome, Delivered) for outcome in outcomes.values())
    assert sorted(n for numbers in sender.delivered.values() for n in numbers) == list(range(40))
    assert all(numbers == sorted(numbers) for numbers in sender.delivered.values()), "per-user order kept"
    assert sender.failures > 0 and clock.now() >= sender.ends_at
