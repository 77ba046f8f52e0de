"""AdaptiveConcurrency on a fake clock: additive increase while healthy and used, multiplicative decrease."""

from __future__ import annotations

import asyncio

from intercom_sidecar.delivery.concurrency import AdaptiveConcurrency
from tests.conftest import FakeClock


async def round_trip(limiter: AdaptiveConcurrency, clock: FakeClock, *, back_pressure: bool, rtt: float = 0.1) -> None:
    """Fill every slot, let the round trip pass, and answer each."""
    slots = [limiter.slot() for _ in range(limiter.limit)]
    reports = [await slot.__aenter__() for slot in slots]
    clock.advance(rtt)
    for slot, report in zip(slots, reports, strict=True):
        report(back_pressure)
        await slot.__aexit__(None, None, None)


async def test_a_healthy_and_busy_intercom_earns_one_more_slot_per_round_trip(clock: FakeClock) -> None:
    limiter = AdaptiveConcurrency(8, initial=2, slow_start=False, clock=clock.now)
    limits = []
    for _ in range(10):
        await round_trip(limiter, clock, back_pressure=False)
        limits.append(limiter.limit)
    assert limits == [3, 4, 5, 6, 7, 8, 8, 8, 8, 8], "+1 per round trip, never above the workers"


async def test_slow_start_doubles_until_the_first_back_pressure_then_adds_one(clock: FakeClock) -> None:
    limiter = AdaptiveConcurrency(64, initial=4, clock=clock.now)
    limits = []
    for back_pressure in (False, False, False, True, False, False):
        await round_trip(limiter, clock, back_pressure=back_pressure)
        limits.append(limiter.limit)
    assert limits == [8, 16, 32, 28, 29, 30], "doubling, a cut by 0.9, then +1 per round trip"


async def test_back_pressure_cuts_the_limit_once_per_round_trip(clock: FakeClock) -> None:
    limiter = AdaptiveConcurrency(16, initial=10, clock=clock.now)
    await round_trip(limiter, clock, back_pressure=True)
    assert limiter.limit == 9
    await round_trip(limiter, clock, back_pressure=True)
    assert limiter.limit == 8
    for _ in range(30):
        await round_trip(limiter, clock, back_pressure=True)
    assert limiter.limit == 1, "never below one"


async def test_an_unused_limit_does_not_grow(clock: FakeClock) -> None:
    limiter = AdaptiveConcurrency(8, initial=4, clock=clock.now)
    for _ in range(5):
        async with limiter.slot() as report:  # one at a time: the limit of 4 is never used up
            clock.advance(0.1)
            report(False)
    assert limiter.limit == 4


async def test_no_more_than_the_limit_run_at_once(clock: FakeClock) -> None:
    limiter = AdaptiveConcurrency(8, initial=2, clock=clock.now)
    release = asyncio.Event()
    peak = 0

    async def deliver() -> None:
        nonlocal peak
        async with limiter.slot() as report:
            peak = max(peak, limiter.in_flight)
            await release.wait()
            report(False)

    tasks = [asyncio.create_task(deliver()) for _ in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert limiter.in_flight == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
