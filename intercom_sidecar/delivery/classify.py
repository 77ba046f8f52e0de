"""Intercom's answer -> success or a classified `DeliveryError`. The one place status codes are judged.

408, 429 and 5xx except 501 are retryable (429 as `ThrottledError`, never retried before Intercom's reset);
401 and 403 mean the token is refused (`UnauthorizedError`: delivery pauses); every other 4xx and 501 is
permanent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from intercom_sidecar.errors import (
    DeliveryError,
    PermanentError,
    RetryableError,
    ThrottledError,
    UnauthorizedError,
)

__all__ = ["error_for_status", "header_number", "throttle_delay"]


def error_for_status(
    status: int,
    *,
    code: str,
    message: str,
    headers: Mapping[str, str],
    endpoint: str,
    now: float,
) -> DeliveryError | None:
    """None for a success (2xx); otherwise the error to raise, classified."""
    if 200 <= status < 300:
        return None
    message = message or f"HTTP {status}"
    if status == 429:
        return ThrottledError(
            message, status=status, code=code, endpoint=endpoint, retry_after=throttle_delay(headers, now)
        )
    if status in (401, 403):
        return UnauthorizedError(message, status=status, code=code, endpoint=endpoint)
    if status == 408 or (status >= 500 and status != 501):
        # Every Intercom answer carries X-RateLimit-Reset; only a 429 makes it a floor. Retry-After always is.
        return RetryableError(
            message, status=status, code=code, endpoint=endpoint, retry_after=_seconds(headers.get("retry-after"))
        )
    return PermanentError(message, status=status, code=code, endpoint=endpoint)


def throttle_delay(headers: Mapping[str, str], now: float) -> float | None:
    """For a 429: seconds until Intercom's announced reset (`X-RateLimit-Reset`, Unix seconds), else
    `Retry-After` (seconds); None when neither is usable."""
    reset = header_number(headers.get("x-ratelimit-reset"))
    if reset is not None:
        return max(0.0, reset - now)
    return _seconds(headers.get("retry-after"))


def _seconds(value: str | None) -> float | None:
    number = header_number(value)
    return None if number is None else max(0.0, number)


def header_number(value: str | None) -> float | None:
    """A header's value as a finite number, else None."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
