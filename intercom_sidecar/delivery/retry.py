"""Run one delivery with retries inside a total time budget.

Gives up early and says why: a permanent error, or a next wait that would cross the budget. A throttled or
`Retry-After` answer is never retried before the server's delay; otherwise the wait is full-jitter backoff.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from intercom_sidecar.config import RetryConfig
from intercom_sidecar.delivery.backoff import backoff_delay
from intercom_sidecar.delivery.clock import Clock
from intercom_sidecar.errors import RetriesExhaustedError, RetryableError

__all__ = ["deliver_with_retries"]


async def deliver_with_retries(
    attempt: Callable[[], Awaitable[None]],
    *,
    policy: RetryConfig,
    clock: Clock,
    rng: random.Random,
    on_retry: Callable[[int, RetryableError, float], None] | None = None,
) -> int:
    """Call `attempt` until it succeeds; return the number of attempts made.

    Raises `PermanentError` when Intercom refuses, and `RetriesExhaustedError` when the next wait would cross
    the retry budget (`max_elapsed_seconds`); the last retryable error is its `__cause__`.
    """
    started = clock.now()
    attempts = 0
    while True:
        attempts += 1
        try:
            await attempt()
            return attempts
        except RetryableError as error:
            delay = backoff_delay(attempts, policy, rng)
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            elapsed = clock.now() - started
            if elapsed + delay > policy.max_elapsed_seconds:
                raise RetriesExhaustedError(
                    f"retries exhausted after {attempts} attempts in {elapsed:.0f}s; last error: {error.reason}",
                    status=error.status,
                    code=error.code,
                    endpoint=error.endpoint,
                ) from error
            if on_retry is not None:
                on_retry(attempts, error, delay)
            await clock.sleep(delay)
