"""Adaptive request concurrency (AIMD), after Vector's: how many deliveries run at once follows Intercom's health.

Start low and, like TCP's slow start, double the limit per round trip while it is used and Intercom is healthy,
until the first sign of back-pressure. From then on, while answers come back without back-pressure and no slower
than usual, and the limit is actually used, add one per round trip (additive increase). On back-pressure (429,
408, 5xx, timeouts, connection errors) or a round trip far above the recent average, cut the limit by
`decrease_ratio` at most once per round trip (multiplicative decrease). The workers are the ceiling; the limit
never drops below one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

__all__ = ["AdaptiveConcurrency"]

_EWMA_ALPHA = 0.4
_DEVIATION_SCALE = 2.5


class AdaptiveConcurrency:
    def __init__(
        self,
        maximum: int,
        *,
        initial: int = 2,
        decrease_ratio: float = 0.9,
        slow_start: bool = True,
        clock: Callable[[], float],
    ) -> None:
        self.maximum = maximum
        self._slow_start = slow_start
        """Doubling per round trip, until the first back-pressure or slow answer."""
        self.limit = max(1, min(initial, maximum))
        self._decrease_ratio = decrease_ratio
        self._clock = clock
        self._in_flight = 0
        self._room = asyncio.Condition()
        self._rtt_mean: float | None = None
        self._rtt_deviation = 0.0
        self._last_change = -math.inf
        self._saturated = False

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Callable[[bool], None]]:
        """Hold one of `limit` slots; call the yielded function with whether the answer was back-pressure."""
        async with self._room:
            await self._room.wait_for(lambda: self._in_flight < self.limit)
            self._in_flight += 1
            if self._in_flight >= self.limit:
                self._saturated = True
        started = self._clock()
        outcome: list[bool] = []
        try:
            yield outcome.append
        finally:
            self._in_flight -= 1
            if outcome:
                self._record(self._clock() - started, back_pressure=outcome[-1])
            async with self._room:
                self._room.notify_all()

    def _record(self, rtt: float, *, back_pressure: bool) -> None:
        now = self._clock()
        mean = self._rtt_mean
        slow = mean is not None and rtt > mean + _DEVIATION_SCALE * max(self._rtt_deviation, 0.05 * mean)
        if mean is None:
            self._rtt_mean = rtt
        else:
            self._rtt_deviation += _EWMA_ALPHA * (abs(rtt - mean) - self._rtt_deviation)
            self._rtt_mean = mean + _EWMA_ALPHA * (rtt - mean)
        window = self._rtt_mean or 0.0
        if now - self._last_change < window:
            return  # at most one change per round trip
        if back_pressure or slow:
            self.limit = max(1, math.floor(self.limit * self._decrease_ratio))
            self._last_change = now
            self._slow_start = False
        elif self._saturated and self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit * 2) if self._slow_start else self.limit + 1
            self._last_change = now
        self._saturated = False
