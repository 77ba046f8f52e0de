"""The body of a Segment HTTP API request -> the events in it, as `intercom_sidecar.v1.Event` messages.

    Content-Encoding (gzip, capped) -> UTF-8 -> strict JSON -> one event, or a batch of them -> protobuf

Pure: no I/O, no asyncio. A problem with the request as a whole (encoding, JSON, size, shape) raises
`BadRequestError`, which the server answers with 400; a problem with one event of a batch becomes that event's
`Item.problem`, so the other events are still taken. Limits follow Segment's: 32 KB per event (measured as
compact JSON), 500 KB per request after decompression.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.model import strict_json
from intercom_sidecar.model.segment_json import SegmentJsonError, event_from_segment_json

__all__ = [
    "BATCH_ROUTES",
    "CALL_ROUTES",
    "MAX_BATCH_EVENTS",
    "MAX_REQUEST_BYTES",
    "BadRequestError",
    "Item",
    "decompress",
    "parse_json",
    "parse_request",
]

MAX_REQUEST_BYTES: Final = 500 * 1024
"""Segment's limit for one request (a batch), after decompression."""
MAX_BATCH_EVENTS: Final = 10_000
"""Ours, not Segment's: 500 KB of tiny invalid events would otherwise be hundreds of thousands of acks."""

CALL_ROUTES: Final[Mapping[str, str]] = {
    f"/v1/{kind}": kind for kind in ("identify", "track", "page", "screen", "group", "alias")
}
"""Path -> the call type of its one event."""
BATCH_ROUTES: Final = frozenset({"/v1/batch", "/v1/import"})
"""`/v1/import` is Segment's older name for the batch endpoint."""

_BATCH_DEFAULTS = ("context", "integrations")
"""Top-level keys of a batch that are merged into each of its events (the event's own keys win)."""


class BadRequestError(ValueError):
    """The request as a whole cannot be read; answered with 400 and this message."""


@dataclass(frozen=True, slots=True)
class Item:
    """One event of the request: its message, or why it has none. `label` says where it was (`batch[3]`)."""

    label: str
    message_id: str
    message: event_pb2.Event | None = None
    problem: InvalidEventError | None = None


def parse_request(path: str, body: bytes, content_encoding: str, *, max_event_bytes: int) -> list[Item]:
    """The events of a request to `path` (a key of CALL_ROUTES, or one of BATCH_ROUTES)."""
    data = parse_json(decompress(body, content_encoding, MAX_REQUEST_BYTES))
    if not isinstance(data, dict):
        raise BadRequestError("the body must be a JSON object")
    if path in BATCH_ROUTES:
        return _batch_items(data, max_event_bytes)
    kind = CALL_ROUTES[path]
    return [_item(kind, {**data, "type": kind}, max_event_bytes)]  # the route says the type, as at Segment


def decompress(body: bytes, content_encoding: str, limit: int) -> bytes:
    """`body` decoded per its Content-Encoding (none or gzip), refusing more than `limit` bytes of output: a small
    gzip bomb stops at the limit instead of filling memory."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        data = body
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            raise BadRequestError(f"the body is not valid gzip ({error})") from None
        if len(data) <= limit and not inflater.eof:
            raise BadRequestError("the gzip body is truncated")
        if inflater.eof and inflater.unused_data:
            raise BadRequestError("the body has data after its gzip stream")
    else:
        raise BadRequestError(f"Content-Encoding {content_encoding.strip()!r} is not supported (send gzip or none)")
    if len(data) > limit:
        raise BadRequestError(f"the body is over {limit} bytes ({limit // 1024} KB) after decompression")
    return data


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN or infinities (nor numbers too large for a double)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequestError(f"the body is not UTF-8 (byte {error.start})") from None
    if not text.strip():
        raise BadRequestError("the body is empty; send a JSON object")
    try:
        return strict_json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequestError(f"invalid JSON: {error}") from None
    except ValueError as error:  # from the hooks, or an integer with too many digits
        raise BadRequestError(f"invalid JSON: {error}") from None
    except RecursionError:
        raise BadRequestError("invalid JSON: nested too deeply") from None


def _batch_items(data: dict[str, Any], max_event_bytes: int) -> list[Item]:
    batch = data.get("batch")
    if not isinstance(batch, list):
        raise BadRequestError("batch: must be a list of events")
    if len(batch) > MAX_BATCH_EVENTS:
        raise BadRequestError(f"batch: has {len(batch)} events; the limit is {MAX_BATCH_EVENTS}")
    defaults = {key: data[key] for key in _BATCH_DEFAULTS if isinstance(data.get(key), dict)}
    sent_at = data.get("sentAt")
    items = []
    for index, event in enumerate(batch):
        label = f"batch[{index}]"
        if not isinstance(event, dict):
            items.append(_invalid(label, "", "event", "must be a JSON object"))
            continue
        merged = dict(event)
        for key, default in defaults.items():
            own = event.get(key)
            merged[key] = {**default, **own} if isinstance(own, dict) else own if key in event else default
        if sent_at is not None and "sentAt" not in event:
            merged["sentAt"] = sent_at  # for clock-skew correction, as Segment does
        items.append(_item(label, merged, max_event_bytes, size_of=event))
    return items


def _item(label: str, event: dict[str, Any], max_event_bytes: int, size_of: dict[str, Any] | None = None) -> Item:
    raw_id = event.get("messageId")
    message_id = str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else ""
    size = len(json.dumps(event if size_of is None else size_of, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_event_bytes:
        return _invalid(label, message_id, "event", f"is {size} bytes of JSON; the limit is {max_event_bytes} bytes")
    try:
        message = event_from_segment_json(event)
    except (SegmentJsonError, ValueError, TypeError) as error:
        return _invalid(label, message_id, "event", str(error))
    except RecursionError:
        return _invalid(label, message_id, "event", "is nested too deeply")
    return Item(label, message.message_id, message)


def _invalid(label: str, message_id: str, field: str, problem: str) -> Item:
    return Item(label, message_id, problem=InvalidEventError(field, problem))
