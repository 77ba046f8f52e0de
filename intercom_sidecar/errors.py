"""The sidecar's error taxonomy, drawn once. Every failure is classified into one of these in one place.

SidecarError
├── InvalidEventError     bad input; the event's ack is INVALID and names the field; never queued
├── DeliveryError         Intercom did not take the event; carries HTTP status, Intercom's code and message
│   ├── RetryableError    timeouts, connection errors, 408, 429, 5xx except 501; may carry retry_after
│   │   └── ThrottledError  429: retry_after comes from Intercom's X-RateLimit-Reset or Retry-After
│   ├── UnauthorizedError 401/403: the token is refused; delivery pauses for everyone, nothing is dead-lettered
│   └── PermanentError    other 4xx, 501; the ack is REJECTED, the event a dead letter
│       ├── RetriesExhaustedError  the retry budget ran out; the last retryable error is its __cause__
│       └── InternalError  a bug in the sidecar met while delivering (logged with its traceback)
├── QueueFullError        backpressure; the ack is RETRY_LATER with retry_after
├── PausedError           delivery is paused (token refused); the ack is RETRY_LATER with retry_after
└── ShuttingDownError     draining; the ack is RETRY_LATER with retry_after
ConfigError(ValueError)   start-up only; names the setting
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DeliveryError",
    "InternalError",
    "InvalidEventError",
    "PausedError",
    "PermanentError",
    "QueueFullError",
    "RetriesExhaustedError",
    "RetryableError",
    "ShuttingDownError",
    "SidecarError",
    "ThrottledError",
    "UnauthorizedError",
]


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


class InvalidEventError(SidecarError):
    """An event that can never be delivered as sent. `field` is its path in Segment's names (`track.event`)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class DeliveryError(SidecarError):
    """Intercom did not take a request.

    `status` is the HTTP status (None for transport failures), `code` Intercom's error code (`not_found`) or our
    own for transport failures (`timeout`), `message` Intercom's message, `endpoint` the route template.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str = "", endpoint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.endpoint = endpoint

    @property
    def reason(self) -> str:
        """One line for an ack: `intercom 404 not_found: User Not Found (POST /events)`."""
        status = f" {self.status}" if self.status is not None else ""
        code = f" {self.code}" if self.code else ""
        where = f" ({self.endpoint})" if self.endpoint else ""
        return f"intercom{status}{code}: {self.message}{where}"


class RetryableError(DeliveryError):
    """Worth trying again. `retry_after` (seconds) is a floor set by the server, if it said one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, endpoint=endpoint)
        self.retry_after = retry_after


class ThrottledError(RetryableError):
    """Intercom's rate limit (429). Never retried before `retry_after`."""


class UnauthorizedError(DeliveryError):
    """Intercom refused the access token (401 or 403). Not the event's fault: delivery pauses until the token
    changes or works again, and the event is sent then."""


class PermanentError(DeliveryError):
    """Trying again cannot help: Intercom refused the request, or the retry budget ran out."""


class RetriesExhaustedError(PermanentError):
    """The retry budget ran out. `reason` says how many attempts were made and what the last one met."""

    @property
    def reason(self) -> str:
        return self.message


class InternalError(PermanentError):
    """A bug in the sidecar, not Intercom's answer; `reason` says so without blaming Intercom."""

    @property
    def reason(self) -> str:
        return self.message


class QueueFullError(SidecarError):
    """The send queue is at its bound; the caller should send again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PausedError(SidecarError):
    """Delivery is paused because Intercom refuses the access token; send again after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float = 30.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDownError(SidecarError):
    """The sidecar is draining and takes no new events."""

    def __init__(self, message: str = "the sidecar is shutting down", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(ValueError):
    """A setting is missing or invalid. `key` is the environment variable (or flag) to fix."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
