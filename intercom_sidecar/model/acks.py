"""The outcome of one event, before it becomes an `Ack` message on the wire."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["AckInfo", "AckStatus"]


class AckStatus(enum.Enum):
    ACCEPTED = "accepted"
    """Queued; it will be delivered or rejected."""
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    FILTERED = "filtered"
    """Intentionally not sent."""
    INVALID = "invalid"
    REJECTED = "rejected"
    RETRY_LATER = "retry_later"


@dataclass(frozen=True, slots=True)
class AckInfo:
    message_id: str
    status: AckStatus
    trace_id: str
    reason: str = ""
    retry_after: float | None = None
    """Seconds; set with RETRY_LATER."""
