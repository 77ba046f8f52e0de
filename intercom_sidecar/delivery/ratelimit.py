"""Pacing within Intercom's rate limit, from what Intercom says about it.

Intercom's budget (about 10,000 calls a minute per app, enforced per 10-second window) is shared by every replica
of the sidecar, so no replica can know its share: each one reads the headers on every answer
(`X-RateLimit-Remaining`, `X-RateLimit-Reset` in Unix seconds), counts its own requests granted since, and spreads
what remains over the time left in the window. Those headers already count the other replicas' requests, so
replicas that all pace this way converge on the shared budget instead of overrunning it. When nothing is known
about the current window (once a window has ended), one request goes first and the others wait for its answer,
so replicas do not all rush the new window at once. The last 5% of each window is left unused: near
its end every replica still sees the same few requests remaining and would race for them. Once the window is spent,
or after a 429, nobody sends before the announced reset.

Requests that must wait queue up first come, first served, and one task (the pump) waits on their behalf and
hands out the turns: with 64 workers paced at Intercom's rate, each waiting on its own timer would mean 64 wake-ups
per request granted, which cost more CPU than the requests themselves.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

from intercom_sidecar.delivery.classify import header_number
from intercom_sidecar.delivery.clock import Clock

__all__ = ["RateLimiter"]

_RESERVE_FRACTION = 0.05
"""The share of a window's limit kept unused, so replicas that see the same count do not overrun it together."""
_RESET_MARGIN_SECONDS = 0.05
"""Wait this much past the announced reset: clocks differ a little, and an early request only costs a 429."""
_GRANTED: Final = "granted"
_PROBE: Final = "probe"
"""Granted, as the one request that goes first into a window nothing is known about."""


class RateLimiter:
    """Shared by every request to one Intercom app. `acquire()` before a request; then `observe()` its answer,
    or `release()` when it got none."""

    def __init__(self, clock: Clock, on_wait: Callable[[float], None] | None = None) -> None:
        self._clock = clock
        self._on_wait = on_wait
        self._remaining: float | None = None
        """Requests left in the current window, as last reported, less what was granted since."""
        self._reset_at = -math.inf
        self._reserve = 0.0
        self._blocked_until = -math.inf
        self._next_grant = -math.inf
        self._probe: asyncio.Future[None] | None = None
        """The answer awaited before anyone else sends into a window nothing is known about."""
        self._line: deque[tuple[asyncio.Future[str], float]] = deque()
        """Requests waiting for their turn, each with when it began to wait."""
        self._pump: asyncio.Task[None] | None = None
        self.waited_seconds = 0.0
        """Total time requests spent waiting for the rate limit."""

    def state(self) -> tuple[float | None, float | None, float | None]:
        """What is known now, for the event view: (requests remaining in the window, when it resets, when a 429's
        block ends), each None when unknown or past. Times are Unix seconds."""
        now = self._clock.now()
        known = self._remaining is not None and now < self._reset_at
        return (
            max(0.0, self._remaining) if known and self._remaining is not None else None,
            self._reset_at if known else None,
            self._blocked_until if now < self._blocked_until else None,
        )

    async def acquire(self) -> None:
        if not self._line and isinstance(self._step(self._clock.now()), str):
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[str] = loop.create_future()
        began = self._clock.now()
        self._line.append((turn, began))
        if self._pump is None:
            self._pump = loop.create_task(self._hand_out_turns())
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result() == _PROBE:
                self.release()  # its request will not be sent: the others need not wait for its answer
            if self._pump is not None and all(waiting.done() for waiting, _ in self._line):
                self._pump.cancel()
                self._pump = None  # a request arriving before the cancelled pump has ended starts a new one
            raise
        waited = self._clock.now() - began
        self.waited_seconds += waited
        if self._on_wait is not None:
            self._on_wait(waited)

    async def _hand_out_turns(self) -> None:
        """Give the line its turns in order, waiting (one timer, whoever waits) as the budget says."""
        try:
            while self._line:
                turn, _ = self._line[0]
                if turn.done():  # its caller gave up
                    self._line.popleft()
                    continue
                step = self._step(self._clock.now())
                if isinstance(step, str):
                    self._line.popleft()
                    turn.set_result(step)
                elif isinstance(step, asyncio.Future):
                    await asyncio.shield(step)
                else:
                    await self._clock.sleep(step)
        finally:
            if self._pump is asyncio.current_task():
                self._pump = None

    def _step(self, now: float) -> str | float | asyncio.Future[None]:
        """What the next request may do now: go (`_GRANTED`, or `_PROBE` first into an unknown window; the grant
        is counted), wait this many seconds and ask again, or wait for the probe's answer."""
        if now < self._blocked_until:
            return self._blocked_until - now
        if self._remaining is None:  # no answer has carried rate-limit headers yet: nothing to pace by
            return _GRANTED
        if now >= self._reset_at:
            if self._probe is None:  # nothing known about this window: go first, alone
                self._probe = asyncio.get_running_loop().create_future()
                return _PROBE
            return self._probe
        if self._remaining <= self._reserve:
            return self._reset_at + _RESET_MARGIN_SECONDS - now
        if now < self._next_grant:
            return self._next_grant - now
        self._next_grant = now + (self._reset_at - now) / (self._remaining - self._reserve)
        self._remaining -= 1
        return _GRANTED

    def observe(self, headers: Mapping[str, str], status: int) -> None:
        """Learn from one answer's headers (and a 429: nothing is sent before the reset it announces)."""
        reset = header_number(headers.get("x-ratelimit-reset"))
        remaining = header_number(headers.get("x-ratelimit-remaining"))
        limit = header_number(headers.get("x-ratelimit-limit"))
        if limit is not None:
            self._reserve = math.floor(limit * _RESERVE_FRACTION)
        if reset is not None and remaining is not None:
            if reset > self._reset_at:  # a new window: its count replaces what we had
                self._reset_at, self._remaining = reset, remaining
            elif reset == self._reset_at and self._remaining is not None:
                # Answers arrive out of order: the lowest count is the latest (our own grants stay subtracted).
                self._remaining = min(self._remaining, remaining)
        if status == 429:
            until = (reset if reset is not None else self._clock.now() + 1.0) + _RESET_MARGIN_SECONDS
            self._blocked_until = max(self._blocked_until, until)
        self.release()

    def release(self) -> None:
        """A request is over; if it was the one sent first into an unknown window, the others may go."""
        if self._probe is not None:
            probe, self._probe = self._probe, None
            probe.set_result(None)
