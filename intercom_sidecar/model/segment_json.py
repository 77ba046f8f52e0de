"""Segment's JSON (as sent by analytics libraries) -> the `intercom_sidecar.v1.Event` protobuf message.

Used by `intercom-sidecar send` and by the Segment-compatible HTTP API (`server/segment_body.py`). A missing
`messageId` is generated, as Segment's libraries and its server do: a request resent without ids is therefore not
recognised as a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2

__all__ = ["SegmentJsonError", "event_from_segment_json"]

_CALL_FIELDS: Mapping[str, tuple[tuple[str, str], ...]] = {
    # call type -> (Segment JSON key, protobuf field) pairs of the call's own message
    "identify": (("traits", "traits"),),
    "track": (("event", "event"), ("properties", "properties")),
    "page": (("name", "name"), ("category", "category"), ("properties", "properties")),
    "screen": (("name", "name"), ("category", "category"), ("properties", "properties")),
    "group": (("groupId", "group_id"), ("traits", "traits")),
    "alias": (("previousId", "previous_id"),),
}


class SegmentJsonError(ValueError):
    """The JSON is not a Segment event we can turn into a message."""


def event_from_segment_json(data: Any) -> event_pb2.Event:
    if not isinstance(data, dict):
        raise SegmentJsonError("an event must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _CALL_FIELDS:
        raise SegmentJsonError(f"type must be one of {', '.join(_CALL_FIELDS)}, got {kind!r}")
    common = {
        "messageId": str(data.get("messageId") or uuid.uuid4()),
        **{key: data[key] for key in ("userId", "anonymousId", "timestamp", "sentAt") if data.get(key) is not None},
        **{key: data[key] for key in ("context", "integrations") if isinstance(data.get(key), dict)},
    }
    call = {proto_key: data[key] for key, proto_key in _CALL_FIELDS[kind] if data.get(key) is not None}
    for key in ("userId", "anonymousId"):
        if key in common and not isinstance(common[key], str):
            common[key] = str(common[key])
    for key in ("group_id", "previous_id"):  # ids inside the call's own message
        if key in call and not isinstance(call[key], str):
            call[key] = str(call[key])
    try:
        return json_format.ParseDict({**common, kind: call}, event_pb2.Event())
    except json_format.ParseError as exc:
        raise SegmentJsonError(str(exc)) from None
