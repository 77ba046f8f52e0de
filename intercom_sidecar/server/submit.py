"""How the edges (gRPC, the Segment HTTP API) hand an event to `Intake`: a parsed protobuf message, or one that
could not be read at all. Either way the event goes through the intake, so it is counted and has its span and ack.

`submit_*` answer with the ack or a future of it; `take_*` with the ack now or None, and later `deliver(ack)`
(see `Intake.submit_then`), for callers that collect many acks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from opentelemetry.context import Context

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.intake import Intake
from intercom_sidecar.model.acks import AckInfo
from intercom_sidecar.model.events import Event
from intercom_sidecar.model.from_proto import DecodeLimits, event_from_proto
from intercom_sidecar.telemetry.spans import context_from_carrier

__all__ = ["submit_event", "submit_unreadable", "take_event", "take_unreadable"]

Deliver = Callable[[AckInfo], None]


def submit_event(
    intake: Intake, message: event_pb2.Event, limits: DecodeLimits, *, wait: bool, parent: Context | None
) -> AckInfo | asyncio.Future[AckInfo]:
    """Hand one protobuf event to `intake`: validated by `event_from_proto`, spooled as serialized protobuf with its
    event span's `traceparent` (the event's own `trace_context`, when set, wins over `parent`)."""
    decode, payload, parent = _event_parts(message, limits, parent)
    return intake.submit(message.message_id, decode, payload, wait=wait, parent=parent)


def take_event(
    intake: Intake,
    message: event_pb2.Event,
    limits: DecodeLimits,
    deliver: Deliver,
    *,
    wait: bool,
    parent: Context | None,
) -> AckInfo | None:
    """`submit_event`, answering through `deliver` when the ack is not known at once."""
    decode, payload, parent = _event_parts(message, limits, parent)
    return intake.submit_then(message.message_id, decode, payload, deliver, wait=wait, parent=parent)


def submit_unreadable(
    intake: Intake, message_id: str, problem: InvalidEventError, *, parent: Context | None
) -> AckInfo | asyncio.Future[AckInfo]:
    """An event that could not even be parsed: INVALID with `problem`, through the intake like any invalid event."""
    decode, payload = _unreadable_parts(problem)
    return intake.submit(message_id, decode, payload, wait=False, parent=parent)


def take_unreadable(intake: Intake, message_id: str, problem: InvalidEventError, *, parent: Context | None) -> AckInfo:
    """`submit_unreadable` for the `take_*` callers: an unreadable event's ack is always known at once."""
    decode, payload = _unreadable_parts(problem)
    ack = intake.submit_then(message_id, decode, payload, _never, wait=False, parent=parent)
    assert ack is not None, "an event that failed to decode is answered at once"
    return ack


def _event_parts(
    message: event_pb2.Event, limits: DecodeLimits, parent: Context | None
) -> tuple[Callable[[float], Event], Callable[[str], bytes], Context | None]:
    def decode(now: float) -> Event:
        return event_from_proto(message, now=now, limits=limits)

    def payload(traceparent: str) -> bytes:
        message.trace_context.clear()
        message.trace_context["traceparent"] = traceparent
        return message.SerializeToString()

    if message.trace_context:
        parent = context_from_carrier(message.trace_context) or parent
    return decode, payload, parent


def _unreadable_parts(problem: InvalidEventError) -> tuple[Callable[[float], Event], Callable[[str], bytes]]:
    def decode(now: float) -> Event:
        raise problem

    def payload(traceparent: str) -> bytes:  # never called: decode raised
        raise AssertionError("an event that failed to decode is never spooled")

    return decode, payload


def _never(ack: AckInfo) -> None:
    raise AssertionError("an event that failed to decode is answered at once")
