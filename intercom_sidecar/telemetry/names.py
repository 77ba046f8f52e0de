"""Span names and attribute keys, defined once. `segment.*` and `intercom.*` are this project's namespace."""

from __future__ import annotations

__all__ = [
    "ATTR_ACK_STATUS",
    "ATTR_ATTEMPTS",
    "ATTR_CALL_TYPE",
    "ATTR_MESSAGE_ID",
    "ATTR_OUTCOME_REASON",
    "SPAN_EVENT",
    "TRACER_NAME",
]

TRACER_NAME = "intercom_sidecar"

SPAN_EVENT = "intercom_sidecar.event"
"""One per event, from intake to its final outcome."""

ATTR_MESSAGE_ID = "segment.message_id"
ATTR_CALL_TYPE = "segment.type"
ATTR_ACK_STATUS = "intercom_sidecar.ack.status"
ATTR_OUTCOME_REASON = "intercom_sidecar.outcome.reason"
ATTR_ATTEMPTS = "retry.attempts"
