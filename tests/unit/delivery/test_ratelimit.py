"""RateLimiter on a fake clock: pacing from X-RateLimit-Remaining/Reset, holding until the reset after a 429."""

from __future__ import annotations

import asyncio
import time

import pytest

from intercom_sidecar.delivery.clock import SystemClock
from intercom_sidecar.delivery.ratelimit import RateLimiter
from tests.conftest import FakeClock

MARGIN = 0.05


def headers(remaining: int, reset: float, limit: int = 10) -> dict[str, str]:
    """With a limit under 20, no request is held in reserve (5% of it rounds down to 0)."""
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining), "x-ratelimit-reset": str(reset)}


async def grant(limiter: RateLimiter, answer: dict[str, str] | None = None, status: int = 200) -> None:
    await limiter.acquire()
    limiter.observe(answer or {}, status)


async def test_nothing_known_means_no_wait(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    for _ in range(5):
        await grant(limiter)
    assert clock.sleeps == []


async def test_a_spent_window_waits_for_the_announced_reset(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    reset = clock.now() + 7
    await grant(limiter, headers(0, reset))
    await limiter.acquire()
    assert clock.now() == pytest.approx(reset + MARGIN)
    assert limiter.waited_seconds == pytest.approx(7 + MARGIN)


async def test_a_429_holds_every_request_until_the_reset(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    reset = clock.now() + 3
    await grant(limiter, headers(0, reset), status=429)
    assert clock.now() < reset
    await limiter.acquire()
    assert clock.now() >= reset, "never a request before the announced reset"


async def test_what_remains_is_spread_over_the_window(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    start = clock.now()
    reset = start + 10
    await grant(limiter, headers(10, reset))  # 10 left for the next 10 s: one a second
    for left in range(9, 4, -1):  # five more grants: four intervals of about a second
        await grant(limiter, headers(left, reset))
    assert clock.now() - start == pytest.approx(4.0, abs=0.5)


async def test_answers_out_of_order_keep_the_lowest_count(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    reset = clock.now() + 10
    await grant(limiter, headers(0, reset))
    await grant(limiter, headers(50, reset))  # an older answer, arriving late, does not reopen the window
    assert clock.now() >= reset


async def test_a_new_window_replaces_the_old_count(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    await grant(limiter, headers(0, clock.now() + 1))
    await limiter.acquire()  # waits for the first window's reset
    limiter.observe(headers(99, clock.now() + 10), 200)
    before = clock.now()
    await limiter.acquire()
    assert clock.now() == pytest.approx(before, abs=0.2)


async def test_requests_granted_since_the_last_answer_are_counted(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    reset = clock.now() + 10
    await grant(limiter, headers(2, reset))
    await limiter.acquire()  # in flight, not answered yet
    await limiter.acquire()  # the last one
    assert clock.now() < reset
    await limiter.acquire()  # none left: waits for the reset
    assert clock.now() >= reset


async def test_five_percent_of_the_limit_is_left_unused(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    reset = clock.now() + 10
    await grant(limiter, headers(6, reset, limit=100))  # 5 of these 6 are the reserve
    await limiter.acquire()
    assert clock.now() < reset
    await limiter.acquire()
    assert clock.now() >= reset


async def test_a_new_window_is_probed_by_one_request_before_the_others_go(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    await grant(limiter, headers(5, clock.now() + 1))
    clock.advance(2)  # that window is over; nothing is known about this one
    await limiter.acquire()  # the probe
    second = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert not second.done(), "the others wait for the probe's answer"
    limiter.observe(headers(9, clock.now() + 10), 200)
    await second


async def test_answers_without_rate_limit_headers_are_not_paced(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    for _ in range(3):
        await limiter.acquire()
    assert clock.sleeps == []


async def test_waiting_requests_share_one_timer_and_go_in_arrival_order(clock: FakeClock) -> None:
    """64 workers paced at one request a second: one wait per grant, not one per waiting worker per grant."""
    limiter = RateLimiter(clock)
    reset = clock.now() + 100
    await grant(limiter, headers(100, reset, limit=10))
    order: list[int] = []

    async def worker(number: int) -> None:
        await limiter.acquire()
        order.append(number)

    clock.sleeps.clear()
    await asyncio.gather(*(worker(number) for number in range(64)))
    assert order == list(range(64))
    assert len(clock.sleeps) <= 64, f"{len(clock.sleeps)} waits for 64 grants"


async def test_each_request_counts_its_own_wait(clock: FakeClock) -> None:
    waits: list[float] = []
    limiter = RateLimiter(clock, on_wait=waits.append)
    reset = clock.now() + 4
    await grant(limiter, headers(0, reset))
    # Both wait for the reset; the first then probes the new window, and its answer lets the second go.
    await asyncio.gather(grant(limiter, headers(9, reset + 10)), grant(limiter, headers(8, reset + 10)))
    assert waits == [pytest.approx(4 + MARGIN), pytest.approx(4 + MARGIN)]
    assert limiter.waited_seconds == pytest.approx(2 * (4 + MARGIN))


async def test_a_request_that_gives_up_waiting_leaves_the_line(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    await grant(limiter, headers(5, clock.now() + 1))
    clock.advance(2)  # a new window: the first request probes it
    await limiter.acquire()
    gives_up = asyncio.ensure_future(limiter.acquire())
    stays = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    gives_up.cancel()
    limiter.observe(headers(9, clock.now() + 10), 200)
    await stays
    assert gives_up.cancelled()


async def test_a_probe_that_is_cancelled_before_it_sends_lets_the_others_go(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    await grant(limiter, headers(0, clock.now() + 1))
    waiting = asyncio.ensure_future(limiter.acquire())  # waits for the reset, then probes the new window
    second = asyncio.ensure_future(limiter.acquire())
    for _ in range(5):
        await asyncio.sleep(0)
    assert waiting.done() and not second.done(), "the probe went; the other waits for its answer"
    # The probe's caller never sends; had it been cancelled before resuming, release() must still happen:
    limiter.release()
    await second


async def test_a_probe_turn_cancelled_before_its_caller_resumes_is_released(clock: FakeClock) -> None:
    limiter = RateLimiter(clock)
    await grant(limiter, headers(5, clock.now() + 1))
    clock.advance(2)  # nothing known about this window
    blocker = asyncio.ensure_future(limiter.acquire())  # probes it...
    await blocker
    probe = asyncio.ensure_future(limiter.acquire())  # ...so these two wait in line
    other = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    limiter.observe({}, 200)  # the first probe's answer, without rate-limit news: the window is still unknown
    # What the pump does next, and a cancellation landing in the same loop turn, before `probe` resumes: it was
    # granted the new window's probe, and will never send.
    turn, _ = limiter._line.popleft()
    turn.set_result(limiter._step(clock.now()))
    probe.cancel()
    await asyncio.wait_for(other, 1)  # had the probe turn not been released, `other` would wait for ever
    assert probe.cancelled()


async def test_a_request_arriving_as_the_last_waiter_gives_up_is_still_served() -> None:
    """The last waiter's cancellation stops the pump (asleep on a real timer here); a request in the same loop turn
    must get a pump of its own rather than join a line nobody serves."""
    limiter = RateLimiter(SystemClock())
    limiter.observe(headers(0, time.time() + 0.2), 429)
    first = asyncio.ensure_future(limiter.acquire())
    while limiter._pump is None:  # `first` waits in line, and the pump sleeps until the block ends
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    first.cancel()
    second = asyncio.ensure_future(limiter.acquire())
    await asyncio.wait_for(second, 2)
    assert first.cancelled()
