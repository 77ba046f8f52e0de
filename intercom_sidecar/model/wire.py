"""Serialized events as they arrive: parse one `intercom_sidecar.v1.Event`, or say exactly why it cannot be parsed.

The gRPC methods take raw bytes (see `server/servicer.py`), so one message protobuf cannot parse (a string that
is not UTF-8, nesting past the parser's limit of 100 messages, truncated bytes) costs that message an INVALID
ack, not the whole stream. protobuf only says "Error parsing message"; `_diagnose` walks the wire format
(iteratively, with the message descriptors) to name the field, e.g. `identify.traits.name: is not valid UTF-8`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.errors import InvalidEventError

__all__ = [
    "PROTOBUF_MAX_DEPTH",
    "TooManyEventsError",
    "WireError",
    "parse_event",
    "peek_message_id",
    "shorten",
    "shown_key",
    "split_send_request",
]

PROTOBUF_MAX_DEPTH = 100
"""protobuf's (upb's) parser refuses messages nested deeper than this."""

_VARINT, _FIXED64, _LENGTH_DELIMITED, _START_GROUP, _END_GROUP, _FIXED32 = range(6)
_STRUCT_TYPES = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})
_SEND_EVENTS_FIELD = 1  # SendRequest.events
_MESSAGE_ID_FIELD = event_pb2.Event.DESCRIPTOR.fields_by_name["message_id"].number
_MAX_PEEKED_ID_BYTES = 255


class WireError(ValueError):
    """Bytes that are not protobuf wire format (truncated, a bad tag or wire type)."""


def parse_event(payload: bytes) -> event_pb2.Event:
    """The event in `payload`; InvalidEventError naming the field when protobuf cannot parse it."""
    try:
        return event_pb2.Event.FromString(payload)
    except DecodeError:
        field, problem = _diagnose(payload)
        raise InvalidEventError(shorten(field), problem) from None


class TooManyEventsError(Exception):
    """A `SendRequest` holds more events than the limit (`INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND`)."""


def split_send_request(payload: bytes, max_events: int) -> list[bytes]:
    """The serialized events of a serialized `SendRequest`, each still unparsed, so that one bad event costs
    only its own ack. WireError if the request itself is malformed; TooManyEventsError if it holds more than
    `max_events` (counted before anything is parsed)."""
    events: list[bytes] = []
    for number, wire_type, start, end in _fields(payload, 0, len(payload)):
        if number == _SEND_EVENTS_FIELD and wire_type == _LENGTH_DELIMITED:
            if len(events) == max_events:
                raise TooManyEventsError(f"more than {max_events} events")
            events.append(payload[start:end])
    return events


def peek_message_id(payload: bytes) -> str:
    """The `message_id` of an event protobuf could not parse, when it can be read and is a usable id; else ""."""
    found = ""
    try:
        for number, wire_type, start, end in _fields(payload, 0, len(payload)):
            if number == _MESSAGE_ID_FIELD and wire_type == _LENGTH_DELIMITED:
                raw = payload[start:end]
                found = raw.decode("ascii") if len(raw) <= _MAX_PEEKED_ID_BYTES and _printable(raw) else ""
    except WireError:
        pass
    return found


def shorten(path: str, limit: int = 200) -> str:
    """A field path short enough for an ack's reason: its start and its end."""
    if len(path) <= limit:
        return path
    half = limit // 2
    return f"{path[:half]}...{path[-half:]}"


def _printable(raw: bytes) -> bool:
    return all(0x21 <= byte <= 0x7E for byte in raw)


@dataclass(slots=True)
class _Frame:
    """One message being walked: its bytes span, type, path (Segment's names) and nesting."""

    end: int
    descriptor: Descriptor
    path: str
    depth: int
    items: int = 0
    """Values seen so far, for a ListValue's `[index]`."""


def _diagnose(payload: bytes) -> tuple[str, str]:
    """(field path, problem) for bytes protobuf refused; a generic answer when the walk finds nothing."""
    try:
        found = _walk(payload)
    except WireError as exc:
        return "event", f"is not valid protobuf wire format ({exc})"
    if found is not None:
        return found
    return "event", "is not a valid serialized intercom_sidecar.v1.Event"


def _walk(payload: bytes) -> tuple[str, str] | None:
    """Every field of every nested message, without recursion: a stack of frames, each resumed where it was."""
    stack: list[tuple[_Frame, int]] = [(_Frame(len(payload), event_pb2.Event.DESCRIPTOR, "", 1), 0)]
    while stack:
        frame, position = stack.pop()
        while position < frame.end:
            number, wire_type, start, end = _field(payload, position, frame.end)
            position = end
            field = frame.descriptor.fields_by_number.get(number)
            if field is None or wire_type != _LENGTH_DELIMITED:
                continue  # unknown fields and scalars never fail to parse once the wire format is sound
            path = _path(frame, field, payload[start:end])
            if field.type == FieldDescriptor.TYPE_STRING:
                try:
                    payload[start:end].decode("utf-8")
                except UnicodeDecodeError:
                    return path or "event", "is not valid UTF-8"
            elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
                if frame.depth + 1 > PROTOBUF_MAX_DEPTH:
                    return path or "event", f"is nested deeper than protobuf's limit of {PROTOBUF_MAX_DEPTH} messages"
                stack.append((frame, end))  # come back to the rest of this message afterwards
                stack.append((_Frame(end, field.message_type, path, frame.depth + 1), start))
                break
    return None


def _path(frame: _Frame, field: FieldDescriptor, raw: bytes) -> str:
    """The path of `field` in Segment's terms: `identify.traits.plan.name`, `context.items[2]`.

    A Struct's own wrappers (`fields`, `struct_value`, `list_value`) add nothing; a map entry's key names it."""
    if frame.descriptor.full_name not in _STRUCT_TYPES and not frame.descriptor.GetOptions().map_entry:
        return f"{frame.path}.{field.name}" if frame.path else field.name
    if frame.descriptor.full_name == "google.protobuf.ListValue":
        frame.items += 1
        return f"{frame.path}[{frame.items - 1}]"
    if frame.descriptor.GetOptions().map_entry and field.name == "key":
        key = raw.decode("utf-8", "replace")
        frame.path = f"{frame.path}.{shown_key(key)}"  # the value that follows is named by its key
        return frame.path
    return frame.path


def shown_key(key: str) -> str:
    """A Struct key as a reason shows it: at most 64 characters."""
    return key if len(key) <= 64 else key[:64] + "..."


def _fields(data: bytes, position: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in data[position:end]."""
    while position < end:
        found = _field(data, position, end)
        yield found
        position = found[3]


def _field(data: bytes, position: int, end: int) -> tuple[int, int, int, int]:
    """The field that starts at `position`: (number, wire type, value start, value end)."""
    tag, position = _varint(data, position, end)
    number, wire_type = tag >> 3, tag & 7
    if number == 0:
        raise WireError("field number 0")
    if wire_type == _VARINT:
        _, after = _varint(data, position, end)
    elif wire_type == _FIXED64:
        after = position + 8
    elif wire_type == _FIXED32:
        after = position + 4
    elif wire_type == _LENGTH_DELIMITED:
        length, position = _varint(data, position, end)
        after = position + length
    else:
        raise WireError(f"wire type {wire_type} (groups are not used by this API)")
    if after > end:
        raise WireError(f"field {number} runs past the end of its message")
    return number, wire_type, position, after


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while position < end and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise WireError("truncated or overlong varint")
