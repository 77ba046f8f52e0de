"""Status and headers -> success or a classified DeliveryError, in the shape of otlp_test.go TestErrorResponses."""

from __future__ import annotations

import httpx
import pytest

from intercom_sidecar.delivery.classify import error_for_status, throttle_delay
from intercom_sidecar.errors import DeliveryError, PermanentError, RetryableError, ThrottledError, UnauthorizedError

NOW = 1_700_000_000.0
RESET_IN_10 = {"X-RateLimit-Reset": str(int(NOW) + 10)}


def classify(
    status: int, headers: dict[str, str] | None = None, message: str = "Intercom said no"
) -> DeliveryError | None:
    return error_for_status(
        status,
        code="some_code",
        message=message,
        headers=httpx.Headers(headers or {}),
        endpoint="POST /events",
        now=NOW,
    )


MATRIX: list[tuple[int, dict[str, str], type[DeliveryError] | None, float | None]] = [
    # status, headers, error type (None: success), retry_after
    (200, {}, None, None),
    (201, {}, None, None),
    (202, {}, None, None),
    (204, {}, None, None),
    (301, {}, PermanentError, None),
    (400, {}, PermanentError, None),
    (401, {}, UnauthorizedError, None),
    (403, {}, UnauthorizedError, None),
    (404, {}, PermanentError, None),
    (404, {"Retry-After": "5"}, PermanentError, None),
    (408, {}, RetryableError, None),
    (409, {}, PermanentError, None),
    (422, {}, PermanentError, None),
    (429, RESET_IN_10, ThrottledError, 10.0),
    (429, {"Retry-After": "7"}, ThrottledError, 7.0),
    (429, {"Retry-After": "2.5"}, ThrottledError, 2.5),
    (429, {**RESET_IN_10, "Retry-After": "7"}, ThrottledError, 10.0),
    (429, {"X-RateLimit-Reset": str(int(NOW) - 30)}, ThrottledError, 0.0),
    (429, {"Retry-After": "-3"}, ThrottledError, 0.0),
    (429, {}, ThrottledError, None),
    (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, ThrottledError, None),
    (429, {"X-RateLimit-Reset": "soon", "Retry-After": "4"}, ThrottledError, 4.0),
    (429, {"Retry-After": "nan"}, ThrottledError, None),
    (429, {"Retry-After": "inf"}, ThrottledError, None),
    (500, {}, RetryableError, None),
    (500, {"Retry-After": "30"}, RetryableError, 30.0),
    (500, RESET_IN_10, RetryableError, None),  # every Intercom answer carries the reset; only a 429 waits for it
    (501, {}, PermanentError, None),
    (501, {"Retry-After": "30"}, PermanentError, None),
    (502, {}, RetryableError, None),
    (503, {"Retry-After": "12"}, RetryableError, 12.0),
    (504, {}, RetryableError, None),
    (599, {}, RetryableError, None),
]


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    MATRIX,
    ids=[f"{status}-{'+'.join(headers) or 'no headers'}" for status, headers, _, _ in MATRIX],
)
def test_status_matrix(
    status: int, headers: dict[str, str], kind: type[DeliveryError] | None, retry_after: float | None
) -> None:
    error = classify(status, headers)
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert (error.status, error.code, error.message, error.endpoint) == (
        status,
        "some_code",
        "Intercom said no",
        "POST /events",
    )
    if isinstance(error, RetryableError):
        assert error.retry_after == retry_after
    else:
        assert retry_after is None
        assert not hasattr(error, "retry_after")


def test_throttled_is_retryable() -> None:
    assert issubclass(ThrottledError, RetryableError)
    assert not issubclass(PermanentError, RetryableError)


def test_empty_message_names_the_status() -> None:
    error = classify(502, message="")
    assert error is not None
    assert error.message == "HTTP 502"


def test_reason_is_one_line_for_the_ack() -> None:
    error = error_for_status(
        404, code="not_found", message="User Not Found", headers={}, endpoint="POST /events", now=NOW
    )
    assert error is not None
    assert error.reason == "intercom 404 not_found: User Not Found (POST /events)"


def test_reason_without_code_or_endpoint() -> None:
    assert DeliveryError("boom", status=500).reason == "intercom 500: boom"
    assert DeliveryError("refused", code="connection_error").reason == "intercom connection_error: refused"


def test_headers_mapping_with_lowercase_keys() -> None:
    """Any case-insensitive mapping works; a plain dict must use lower-case names."""
    assert throttle_delay({"x-ratelimit-reset": str(int(NOW) + 3)}, NOW) == 3.0
    assert throttle_delay({"retry-after": "8"}, NOW) == 8.0
    assert throttle_delay({}, NOW) is None
