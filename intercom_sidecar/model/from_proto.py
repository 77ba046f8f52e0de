"""`intercom_sidecar.v1.Event` (protobuf) -> `Event`, validating as it goes.

With `server/`, the only code that touches the generated protobuf types. Each problem raises
`InvalidEventError` naming the field in Segment's terms, so the caller's ack says exactly what to fix.
Structs are converted by hand: `json_format.MessageToDict` costs several times more (PERF-NOTES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import DecodeError

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.model.events import Alias, Call, Event, Group, Identify, Page, Screen, Track

__all__ = ["MAX_ID_CHARS", "DecodeLimits", "event_from_bytes", "event_from_proto", "struct_to_dict"]

MAX_ID_CHARS = 255
"""The longest message_id, user_id, anonymous_id, group_id or previous_id accepted."""

_NANOS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_event_bytes: int
    max_future_seconds: float


def event_from_proto(message: event_pb2.Event, *, now: float, limits: DecodeLimits) -> Event:
    """Validate `message` and return it as an `Event`. `now` (Unix seconds) stands in for a missing timestamp."""
    if not message.message_id:
        raise InvalidEventError("message_id", "is required")
    _check_id("message_id", message.message_id)
    size = message.ByteSize()
    if size > limits.max_event_bytes:
        raise InvalidEventError("event", f"is {size} bytes; the limit is {limits.max_event_bytes} bytes")
    user_id = _optional_id("user_id", message.user_id)
    anonymous_id = _optional_id("anonymous_id", message.anonymous_id)
    if user_id is None and anonymous_id is None:
        raise InvalidEventError("user_id", "one of user_id and anonymous_id is required")
    latest = now + limits.max_future_seconds
    timestamp = _seconds("timestamp", message.timestamp, latest) if message.HasField("timestamp") else now
    sent_at = _seconds("sent_at", message.sent_at, latest) if message.HasField("sent_at") else None
    return Event(
        message_id=message.message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        sent_at=sent_at,
        call=_call(message),
        context=_struct("context", message.context),
        integrations=_struct("integrations", message.integrations),
    )


def event_from_bytes(payload: bytes, *, now: float, limits: DecodeLimits) -> tuple[Event, dict[str, str]]:
    """An event kept as serialized protobuf (the spool's payload), validated as when it was received at `now`,
    and the W3C trace context kept with it."""
    try:
        message = event_pb2.Event.FromString(payload)
    except DecodeError:
        raise InvalidEventError("event", "is not a valid serialized intercom_sidecar.v1.Event") from None
    return event_from_proto(message, now=now, limits=limits), dict(message.trace_context)


def _call(message: event_pb2.Event) -> Call:
    kind = message.WhichOneof("call")
    if kind == "identify":
        return Identify(traits=_struct("identify.traits", message.identify.traits))
    if kind == "track":
        if not message.track.event.strip():
            raise InvalidEventError("track.event", "must not be empty")
        return Track(event=message.track.event, properties=_struct("track.properties", message.track.properties))
    if kind == "page":
        page = message.page
        return Page(name=page.name, category=page.category, properties=_struct("page.properties", page.properties))
    if kind == "screen":
        screen = message.screen
        return Screen(
            name=screen.name,
            category=screen.category,
            properties=_struct("screen.properties", screen.properties),
        )
    if kind == "group":
        if not message.group.group_id.strip():
            raise InvalidEventError("group.group_id", "is required")
        _check_id("group.group_id", message.group.group_id)
        return Group(group_id=message.group.group_id, traits=_struct("group.traits", message.group.traits))
    if kind == "alias":
        if not message.alias.previous_id.strip():
            raise InvalidEventError("alias.previous_id", "is required")
        _check_id("alias.previous_id", message.alias.previous_id)
        return Alias(previous_id=message.alias.previous_id)
    raise InvalidEventError("call", "exactly one of identify, track, page, screen, group or alias must be set")


def _optional_id(field: str, value: str) -> str | None:
    if not value:
        return None
    _check_id(field, value)
    return value


def _check_id(field: str, value: str) -> None:
    if not value.strip():
        raise InvalidEventError(field, "must not be only whitespace")
    if len(value) > MAX_ID_CHARS:
        raise InvalidEventError(field, f"is {len(value)} characters; the limit is {MAX_ID_CHARS}")


def _seconds(field: str, value: timestamp_pb2.Timestamp, latest: float) -> float:
    if not 0 <= value.nanos < _NANOS_PER_SECOND:
        raise InvalidEventError(field, f"nanos must be in [0, 999999999], got {value.nanos}")
    seconds = value.seconds + value.nanos / _NANOS_PER_SECOND
    if seconds < 0:
        raise InvalidEventError(field, f"is before 1970-01-01T00:00:00Z ({value.seconds} s)")
    if seconds > latest:
        raise InvalidEventError(field, f"is too far in the future ({value.seconds} s since the epoch)")
    return seconds


def _struct(field: str, value: struct_pb2.Struct) -> dict[str, Any]:
    try:
        return struct_to_dict(value)
    except ValueError as exc:
        raise InvalidEventError(field, str(exc)) from None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a plain dict. Whole numbers become ints; NaN and infinities raise ValueError."""
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if number.is_integer() and abs(number) <= 2**53:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    return None
