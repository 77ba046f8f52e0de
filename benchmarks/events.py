"""The benchmark's events: Segment `track` calls spread over a fixed set of users.

Message ids are random UUIDs, as Segment's libraries send them: the spool's dedupe index then takes each insert on
a random page, as it does in production (sequential ids would append to one page and flatter the spool)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from google.protobuf import struct_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2

__all__ = ["USER_PREFIX", "track_events", "user_id"]

USER_PREFIX = "bench-user-"


def user_id(number: int) -> str:
    return f"{USER_PREFIX}{number}"


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def track_events(count: int, users: int, tag: str) -> list[event_pb2.Event]:
    """`count` track events with unique message ids (`tag` and a random UUID), round-robin over `users` users,
    stamped now."""
    now = time.time()
    context = _struct({"library": {"name": "analytics-python", "version": "2.3.0"}, "ip": "203.0.113.7"})
    events = []
    for number in range(count):
        event = event_pb2.Event(
            message_id=f"{tag}-{uuid.uuid4()}",
            user_id=user_id(number % users),
            context=context,
            track=event_pb2.Track(
                event="Order Completed",
                properties=_struct({"revenue": 19.99, "currency": "EUR", "sku": f"A-{number % 50}", "step": number}),
            ),
        )
        event.timestamp.FromNanoseconds(int(now * 1e9))
        events.append(event)
    return events
