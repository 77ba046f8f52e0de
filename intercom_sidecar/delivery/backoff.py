"""Exponential backoff with full jitter: a pure function of the attempt number and a random source."""

from __future__ import annotations

import random

from intercom_sidecar.config import RetryConfig

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, policy: RetryConfig, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): uniform in [0, min(cap, base * 2^(n-1))]."""
    ceiling = min(policy.max_backoff_seconds, policy.initial_backoff_seconds * 2.0 ** min(attempt - 1, 62))
    return rng.uniform(0.0, ceiling)
