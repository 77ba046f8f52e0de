"""deliver_with_retries: a fake clock (no real sleeps), a seeded random source, a scripted attempt."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest

from intercom_sidecar.config import RetryConfig
from intercom_sidecar.delivery.backoff import backoff_delay
from intercom_sidecar.delivery.retry import deliver_with_retries
from intercom_sidecar.errors import (
    PermanentError,
    RetriesExhaustedError,
    RetryableError,
    SidecarError,
    ThrottledError,
)
from tests.conftest import FakeClock

POLICY = RetryConfig(initial_backoff_seconds=1.0, max_backoff_seconds=4.0, max_elapsed_seconds=10.0)


class CeilingRng(random.Random):
    """Always waits the whole backoff ceiling, so the schedule is 1, 2, 4, 4, ... seconds."""

    def uniform(self, a: float, b: float) -> float:
        return b


def unavailable(n: int = 0) -> RetryableError:
    return RetryableError(f"down #{n}", status=503, code="service_unavailable", endpoint="POST /events")


class Script:
    """An attempt that raises the scripted errors in turn, then succeeds. `cost` is clock time per attempt."""

    def __init__(self, clock: FakeClock, *errors: Exception, cost: float = 0.0) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.cost = cost
        self.calls = 0

    def __call__(self) -> Awaitable[None]:
        return self._attempt()

    async def _attempt(self) -> None:
        self.calls += 1
        self.clock.advance(self.cost)
        if self.errors:
            raise self.errors.pop(0)


async def run(
    attempt: Callable[[], Awaitable[None]], clock: FakeClock, rng: random.Random, policy: RetryConfig = POLICY
) -> int:
    return await deliver_with_retries(attempt, policy=policy, clock=clock, rng=rng)


async def test_success_at_once(clock: FakeClock, rng: random.Random) -> None:
    script = Script(clock)
    assert await run(script, clock, rng) == 1
    assert clock.sleeps == []


async def test_retryable_errors_are_retried_with_seeded_backoff(clock: FakeClock, rng: random.Random) -> None:
    script = Script(clock, unavailable(1), unavailable(2))
    start = clock.now()

    assert await run(script, clock, rng) == 3

    twin = random.Random(1234)
    expected = [backoff_delay(1, POLICY, twin), backoff_delay(2, POLICY, twin)]
    assert clock.sleeps == expected
    assert 0 < expected[0] <= 1.0 and 0 < expected[1] <= 2.0
    assert clock.now() == start + sum(expected)


async def test_retry_after_is_a_floor(clock: FakeClock) -> None:
    throttled = ThrottledError("slow down", status=429, code="rate_limit_exceeded", retry_after=7.5)
    script = Script(clock, throttled, RetryableError("down", status=503, retry_after=0.25))

    assert await run(script, clock, CeilingRng()) == 3

    # 7.5 beats the 1 s backoff; the 2 s backoff beats a 0.25 s Retry-After.
    assert clock.sleeps == [7.5, 2.0]


async def test_throttled_without_retry_after_uses_backoff(clock: FakeClock) -> None:
    script = Script(clock, ThrottledError("slow down", status=429, retry_after=None))
    assert await run(script, clock, CeilingRng()) == 2
    assert clock.sleeps == [1.0]


async def test_budget_exhausted(clock: FakeClock) -> None:
    errors = [unavailable(n) for n in range(1, 10)]
    script = Script(clock, *errors)

    with pytest.raises(RetriesExhaustedError) as caught:
        await run(script, clock, CeilingRng())

    # Waits 1, 2, 4 (t = 7); after attempt 4 the next 4 s wait would end at 11 s > the 10 s budget.
    assert script.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]
    error = caught.value
    assert error.__cause__ is errors[3]
    assert isinstance(error, PermanentError)
    assert (error.status, error.code, error.endpoint) == (503, "service_unavailable", "POST /events")
    assert error.message == (
        "retries exhausted after 4 attempts in 7s; last error: intercom 503 service_unavailable: down #4 (POST /events)"
    )
    assert error.reason == error.message


async def test_time_spent_in_attempts_counts_against_the_budget(clock: FakeClock) -> None:
    script = Script(clock, unavailable(1), unavailable(2), cost=6.0)

    with pytest.raises(RetriesExhaustedError) as caught:
        await run(script, clock, CeilingRng())

    # Attempt 1 ends at 6 s, waits 1 s; attempt 2 ends at 13 s and a 2 s wait would cross 10 s.
    assert script.calls == 2
    assert clock.sleeps == [1.0]
    assert caught.value.message.startswith("retries exhausted after 2 attempts in 13s;")


async def test_retry_after_beyond_the_budget_gives_up_without_waiting(clock: FakeClock) -> None:
    throttled = ThrottledError("slow down", status=429, retry_after=3600.0)
    script = Script(clock, throttled)

    with pytest.raises(RetriesExhaustedError) as caught:
        await run(script, clock, CeilingRng())

    assert script.calls == 1
    assert clock.sleeps == []
    assert caught.value.__cause__ is throttled
    assert caught.value.status == 429


async def test_a_wait_that_ends_exactly_at_the_budget_is_allowed(clock: FakeClock) -> None:
    policy = RetryConfig(initial_backoff_seconds=1.0, max_backoff_seconds=4.0, max_elapsed_seconds=7.0)
    script = Script(clock, unavailable(1), unavailable(2), unavailable(3))
    assert await run(script, clock, CeilingRng(), policy) == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


async def test_permanent_error_is_not_retried(clock: FakeClock, rng: random.Random) -> None:
    refused = PermanentError("User Not Found", status=404, code="not_found")
    script = Script(clock, refused)

    with pytest.raises(PermanentError) as caught:
        await run(script, clock, rng)

    assert caught.value is refused
    assert script.calls == 1
    assert clock.sleeps == []


async def test_unexpected_exception_is_not_retried(clock: FakeClock, rng: random.Random) -> None:
    script = Script(clock, KeyError("bug"))
    with pytest.raises(KeyError):
        await run(script, clock, rng)
    assert script.calls == 1


async def test_on_retry_hears_each_retry(clock: FakeClock) -> None:
    first, second = unavailable(1), ThrottledError("slow", status=429, retry_after=3.0)
    heard: list[tuple[int, SidecarError, float]] = []

    attempts = await deliver_with_retries(
        Script(clock, first, second),
        policy=POLICY,
        clock=clock,
        rng=CeilingRng(),
        on_retry=lambda n, error, delay: heard.append((n, error, delay)),
    )

    assert attempts == 3
    assert heard == [(1, first, 1.0), (2, second, 3.0)]
