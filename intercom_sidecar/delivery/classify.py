"""Intercom's answer -> success or a classified `DeliveryError`. The one place status codes are judged.

408, 429 and 5xx except 501 are retryable (429 as `ThrottledError`, never retried before Intercom's reset);
every other 4xx and 501 is permanent.
"""

from __future__ import annotations

from collections.abc import Mapping

from intercom_sidecar.errors import DeliveryError, PermanentError, RetryableError, ThrottledError

__all__ = ["error_for_status", "retry_after_of"]


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
            message, status=status, code=code, endpoint=endpoint, retry_after=retry_after_of(headers, now)
        )
    if status == 408 or (status >= 500 and status != 501):
        return RetryableError(
            message, status=status, code=code, endpoint=endpoint, retry_after=retry_after_of(headers, now)
        )
    return PermanentError(message, status=status, code=code, endpoint=endpoint)


def retry_after_of(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until Intercom's announced reset (`X-RateLimit-Reset`, Unix seconds), else `Retry-After`."""
    reset = _number(headers.get("x-ratelimit-reset"))
    if reset is not None:
        return max(0.0, reset - now)
    after = _number(headers.get("retry-after"))
    if after is not None:
        return max(0.0, after)
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
