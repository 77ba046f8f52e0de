"""`intercom_sidecar.v1.Event` (protobuf) -> `Event`, validating as it goes.

With `server/`, the only code that touches the generated protobuf types. Each problem raises
`InvalidEventError` naming the field in Segment's terms, so the caller's ack says exactly what to fix.
Structs are converted by hand: `json_format.MessageToDict` costs several times more (PERF-NOTES), and by hand
the conversion is iterative (no recursion, whatever the nesting) and checks depth, key count, string length and
numbers as it goes, so the work stops at the first limit crossed and is linear in the size of the event.
A Struct's keys are unique: protobuf maps keep one value per key (the last one on the wire), so a duplicate
key never reaches this code; JSON input is checked for duplicates where it is parsed (`model/strict_json.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.config import LimitsConfig
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.model.events import Alias, Call, Event, Group, Identify, Page, Screen, Track
from intercom_sidecar.model.wire import parse_event, shorten, shown_key

__all__ = ["MAX_ID_CHARS", "DecodeLimits", "event_from_bytes", "event_from_proto", "parse_limited", "struct_to_dict"]

MAX_ID_CHARS = 255
"""The longest message_id, user_id, anonymous_id, group_id or previous_id accepted."""

_NANOS_PER_SECOND = 1_000_000_000
_CONTROL = re.compile("[\x00-\x1f\x7f]")


DecodeLimits = LimitsConfig
"""What one event may hold: the input limits of the configuration, each an INTERCOM_SIDECAR_* setting named in the
INVALID reason of an event that crosses it."""


def parse_limited(payload: bytes, limits: DecodeLimits) -> event_pb2.Event:
    """The serialized event in `payload`, refused before parsing when it is bigger than the limit."""
    _check_size(len(payload), limits)
    return parse_event(payload)


def event_from_proto(message: event_pb2.Event, *, now: float, limits: DecodeLimits) -> Event:
    """Validate `message` and return it as an `Event`. `now` (Unix seconds) stands in for a missing timestamp.

    The event's size is checked where its bytes are (`parse_limited` for gRPC and the spool, the Segment HTTP API
    for its JSON): measuring a parsed message would serialize it once more."""
    message_id = message.message_id
    if not message_id:
        raise InvalidEventError("message_id", "is required")
    if not message_id.strip():
        raise InvalidEventError("message_id", "must not be only whitespace")
    if not (message_id.isascii() and message_id.isprintable()) or " " in message_id:
        raise InvalidEventError("message_id", "must be printable ASCII without spaces (e.g. a UUID)")
    if len(message_id) > MAX_ID_CHARS:
        raise InvalidEventError("message_id", f"is {len(message_id)} characters; the limit is {MAX_ID_CHARS}")
    user_id = _optional_id("user_id", message.user_id)
    anonymous_id = _optional_id("anonymous_id", message.anonymous_id)
    if user_id is None and anonymous_id is None:
        raise InvalidEventError("user_id", "one of user_id and anonymous_id is required")
    timestamp = _seconds("timestamp", message.timestamp, now, limits) if message.HasField("timestamp") else now
    sent_at = _seconds("sent_at", message.sent_at, now, limits) if message.HasField("sent_at") else None
    budget = _Budget(limits)
    call = _call(message, budget)
    return Event(
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        sent_at=sent_at,
        call=call,
        context=budget.convert("context", message.context),
        integrations=budget.convert("integrations", message.integrations),
    )


def event_from_bytes(payload: bytes, *, now: float, limits: DecodeLimits) -> tuple[Event, dict[str, str]]:
    """An event kept as serialized protobuf (the spool's payload), validated as when it was received at `now`,
    and the W3C trace context kept with it."""
    message = parse_limited(payload, limits)
    return event_from_proto(message, now=now, limits=limits), dict(message.trace_context)


def _check_size(size: int, limits: DecodeLimits) -> None:
    if size > limits.max_event_bytes:
        raise InvalidEventError(
            "event", f"is {size} bytes; the limit is {limits.max_event_bytes} bytes (INTERCOM_SIDECAR_MAX_EVENT_BYTES)"
        )


def _call(message: event_pb2.Event, budget: _Budget) -> Call:
    kind = message.WhichOneof("call")
    if kind == "identify":
        return Identify(traits=budget.convert("identify.traits", message.identify.traits))
    if kind == "track":
        track = message.track  # each read of a submessage field makes a new wrapper object: read it once
        name = track.event
        if not name.strip():
            raise InvalidEventError("track.event", "must not be empty")
        return Track(
            event=budget.string("track.event", name), properties=budget.convert("track.properties", track.properties)
        )
    if kind == "page":
        page = message.page
        return Page(
            name=budget.string("page.name", page.name),
            category=budget.string("page.category", page.category),
            properties=budget.convert("page.properties", page.properties),
        )
    if kind == "screen":
        screen = message.screen
        return Screen(
            name=budget.string("screen.name", screen.name),
            category=budget.string("screen.category", screen.category),
            properties=budget.convert("screen.properties", screen.properties),
        )
    if kind == "group":
        group = message.group
        group_id = group.group_id
        if not group_id.strip():
            raise InvalidEventError("group.group_id", "is required")
        _check_id("group.group_id", group_id)
        return Group(group_id=group_id, traits=budget.convert("group.traits", group.traits))
    if kind == "alias":
        previous_id = message.alias.previous_id
        if not previous_id.strip():
            raise InvalidEventError("alias.previous_id", "is required")
        _check_id("alias.previous_id", previous_id)
        return Alias(previous_id=previous_id)
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
    if _CONTROL.search(value):
        raise InvalidEventError(field, "must not contain control characters")


def _seconds(field: str, value: timestamp_pb2.Timestamp, now: float, limits: DecodeLimits) -> float:
    if not 0 <= value.nanos < _NANOS_PER_SECOND:
        raise InvalidEventError(field, f"nanos must be in [0, 999999999], got {value.nanos}")
    seconds = value.seconds + value.nanos / _NANOS_PER_SECOND
    if seconds < 0:
        raise InvalidEventError(field, f"is before 1970-01-01T00:00:00Z ({value.seconds} s)")
    if seconds > now + limits.max_future_seconds:
        raise InvalidEventError(
            field,
            f"is too far in the future ({value.seconds} s since the epoch; the limit is "
            f"{limits.max_future_seconds:g} s ahead, INTERCOM_SIDECAR_MAX_FUTURE_SECONDS)",
        )
    if limits.max_past_seconds and seconds < now - limits.max_past_seconds:
        raise InvalidEventError(
            field,
            f"is too far in the past ({value.seconds} s since the epoch; the limit is "
            f"{limits.max_past_seconds:g} s ago, INTERCOM_SIDECAR_MAX_PAST_SECONDS)",
        )
    return seconds


def struct_to_dict(struct: struct_pb2.Struct, limits: DecodeLimits | None = None) -> dict[str, Any]:
    """A Struct as a plain dict. Whole numbers become ints. ValueError (saying where, below the Struct) for NaN
    and infinities, and for anything past `limits` (by default, no limits but protobuf's own)."""
    budget = _Budget(limits or _UNLIMITED)
    try:
        return budget.convert("", struct)
    except InvalidEventError as exc:
        raise ValueError(str(exc)) from None


_UNLIMITED = DecodeLimits(max_depth=1 << 30, max_keys=1 << 62, max_string_chars=1 << 62)
_NOT_FINITE = "numbers must be finite (no NaN or Infinity)"


@dataclass(slots=True)
class _Budget:
    """The limits of one event, and the keys it has left: every Struct of the event draws on the same count."""

    limits: DecodeLimits
    keys_left: int = field(init=False)

    def __post_init__(self) -> None:
        self.keys_left = self.limits.max_keys

    def string(self, where: str, value: str) -> str:
        if len(value) > self.limits.max_string_chars:
            raise InvalidEventError(
                where,
                f"is {len(value)} characters; the limit is {self.limits.max_string_chars} "
                "(INTERCOM_SIDECAR_MAX_STRING_CHARS)",
            )
        return value

    def convert(self, where: str, struct: struct_pb2.Struct) -> dict[str, Any]:
        """`struct` as a dict, from an explicit stack (no recursion): each value is looked at once, and a value's
        path is only spelled out for an error. Containers are put in place first and filled later, so keys keep
        the event's order. The key count is kept in a local while a Struct's keys are walked (a method call per
        key costs more than the rest of the key's work), and a map's values are read by key (its `items()` goes
        through the abstract-class mixin, about 2.5 times slower)."""
        fields = struct.fields
        if not fields:
            return {}
        max_chars, max_depth = self.limits.max_string_chars, self.limits.max_depth
        root: dict[str, Any] = {}
        # (a map of key/values or a list of values, the container to fill, its path, its depth)
        stack: list[tuple[Any, Any, _Path, int]] = [(fields, root, (None, where), 1)]
        while stack:
            values, target, path, depth = stack.pop()
            is_object = isinstance(target, dict)
            keys_left = self.keys_left
            keys: Iterable[Any] = values if is_object else range(len(values))
            for key in keys:
                value = values[key]
                if is_object:
                    keys_left -= 1
                    if keys_left < 0 or len(key) > max_chars:
                        self.keys_left = keys_left + 1
                        self._count_key(path, key)  # raises, saying which limit
                kind = value.WhichOneof("kind")
                if kind == "string_value":
                    result: Any = value.string_value
                    if len(result) > max_chars:
                        self.string(_render(_child(path, key)), result)
                elif kind == "number_value":
                    result = value.number_value
                    if not math.isfinite(result):
                        raise InvalidEventError(_render(_child(path, key)), _NOT_FINITE)
                    if result.is_integer() and abs(result) <= 2**53:
                        result = int(result)
                elif kind == "bool_value":
                    result = value.bool_value
                elif kind == "struct_value" or kind == "list_value":
                    if depth == max_depth:
                        raise InvalidEventError(
                            _render(_child(path, key)),
                            f"nests objects and lists deeper than {max_depth} levels (INTERCOM_SIDECAR_MAX_DEPTH)",
                        )
                    if kind == "struct_value":
                        result = {}
                        stack.append((value.struct_value.fields, result, _child(path, key), depth + 1))
                    else:
                        items = value.list_value.values
                        result = [None] * len(items)
                        stack.append((items, result, _child(path, key), depth + 1))
                else:
                    result = None
                target[key] = result
            self.keys_left = keys_left
        return root

    def _count_key(self, path: _Path, key: str) -> None:
        self.keys_left -= 1
        if self.keys_left < 0:
            raise InvalidEventError(
                _render(_child(path, key)),
                f"the event has more than {self.limits.max_keys} keys in its objects (traits or properties, "
                "context and integrations together; INTERCOM_SIDECAR_MAX_KEYS)",
            )
        if len(key) > self.limits.max_string_chars:
            raise InvalidEventError(
                _render(_child(path, key)),
                f"the key is {len(key)} characters; the limit is {self.limits.max_string_chars} "
                "(INTERCOM_SIDECAR_MAX_STRING_CHARS)",
            )


def _child(path: _Path, key: str | int) -> _Path:
    return (path, f"[{key}]" if isinstance(key, int) else _key(key))


_Path = tuple[Any, str] | None
"""A path as a linked list (parent, segment), rendered only when an error needs it: building each value's path
as a string would cost time proportional to its depth."""


def _key(key: str) -> str:
    return "." + shown_key(key)


def _render(path: _Path) -> str:
    segments: list[str] = []
    while path is not None:
        path, segment = path
        segments.append(segment)
    return shorten("".join(reversed(segments)).lstrip("."))
