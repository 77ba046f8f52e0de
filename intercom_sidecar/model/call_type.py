"""The call type (identify, track, ...) of a spooled payload, without validating the event."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2

__all__ = ["call_type_of"]


def call_type_of(payload: bytes) -> str:
    """`identify`, `track`, `page`, `screen`, `group` or `alias`; `?` for a payload that is not an event."""
    try:
        return event_pb2.Event.FromString(payload).WhichOneof("call") or "?"
    except DecodeError:
        return "?"
