"""Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^(n-1))], from a seeded random source."""

from __future__ import annotations

import random

import pytest

from intercom_sidecar.config import RetryConfig
from intercom_sidecar.delivery.backoff import backoff_delay

POLICY = RetryConfig(initial_backoff_seconds=0.5, max_backoff_seconds=60.0)


class CeilingRng(random.Random):
    """Always draws the top of the range, exposing the ceiling the jitter is drawn under."""

    def uniform(self, a: float, b: float) -> float:
        assert a == 0.0
        return b


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 32.0), (8, 60.0), (9, 60.0), (100, 60.0), (10_000, 60.0)],
)
def test_ceiling_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    assert backoff_delay(attempt, POLICY, CeilingRng()) == ceiling


def test_seeded_delays_are_reproducible_and_within_the_ceiling(rng: random.Random) -> None:
    delays = [backoff_delay(attempt, POLICY, rng) for attempt in range(1, 13)]
    again = random.Random(1234)
    assert delays == [backoff_delay(attempt, POLICY, again) for attempt in range(1, 13)]
    ceilings = [backoff_delay(attempt, POLICY, CeilingRng()) for attempt in range(1, 13)]
    assert all(0.0 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))


def test_full_jitter_spreads_over_the_whole_range(rng: random.Random) -> None:
    delays = [backoff_delay(3, POLICY, rng) for _ in range(500)]
    assert min(delays) < 0.2 < 1.8 < max(delays) <= 2.0
