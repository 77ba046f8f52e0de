"""How the edges (gRPC, the Segment HTTP API) hand an event to `Intake`: a parsed protobuf message, or one that
could not be read at all. Either way the event goes through the intake, so it is counted and has its span and ack.

`take_*` answer with the ack now, or None and later `deliver(ack)` (see `Intake.submit`); `collect_acks` takes a
batch of events (a `Send`, a Segment request) and waits once for all of their acks."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

from opentelemetry.context import Context

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.intake import Intake
from intercom_sidecar.model.acks import AckInfo
from intercom_sidecar.model.events import Event
from intercom_sidecar.model.from_proto import DecodeLimits, event_from_proto
from intercom_sidecar.telemetry.spans import context_from_carrier

__all__ = ["collect_acks", "take_event", "take_unreadable"]

Deliver = Callable[[AckInfo], None]
_T = TypeVar("_T")


def take_event(
    intake: Intake,
    message: event_pb2.Event,
    limits: DecodeLimits,
    deliver: Deliver,
    *,
    wait: bool,
    parent: Context | None,
) -> AckInfo | None:
    """Hand one protobuf event to `intake`: validated by `event_from_proto`, spooled as serialized protobuf with its
    event span's `traceparent` (the event's own `trace_context`, when set, wins over `parent`). The ack now, or
    None and `deliver(ack)` once it is known."""
    decode, payload, parent = _event_parts(message, limits, parent)
    return intake.submit(message.message_id, decode, payload, deliver, wait=wait, parent=parent)


def take_unreadable(intake: Intake, message_id: str, problem: InvalidEventError, *, parent: Context | None) -> AckInfo:
    """An event that could not even be parsed: INVALID with `problem`, through the intake like any invalid event
    (so its ack is always known at once)."""
    decode, payload = _unreadable_parts(problem)
    ack = intake.submit(message_id, decode, payload, _never, wait=False, parent=parent)
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


async def collect_acks(items: Sequence[_T], take: Callable[[_T, Deliver], AckInfo | None]) -> list[AckInfo]:
    """`take(item, deliver)` for each item (its ack now, or None and `deliver(ack)` later), then the acks in the
    order of the items, after one wait for all of them (not one per event). Cancelling the wait takes nothing
    back: the events stay taken."""
    batch = _AckBatch(len(items))
    for index, item in enumerate(items):
        ack = take(item, functools.partial(batch.put, index))
        if ack is not None:
            batch.put(index, ack)
    await batch.complete()
    return batch.acks


class _AckBatch:
    """The acks of a batch of events, in the order of its events, and one wait for all of them."""

    def __init__(self, size: int) -> None:
        self.acks: list[AckInfo] = [None] * size  # type: ignore[list-item]  # every slot is filled before use
        self._missing = size
        self._complete: asyncio.Future[None] | None = None

    def put(self, index: int, ack: AckInfo) -> None:
        self.acks[index] = ack
        self._missing -= 1
        if not self._missing and self._complete is not None and not self._complete.done():
            self._complete.set_result(None)

    async def complete(self) -> None:
        """Until every event has its ack."""
        if self._missing:
            self._complete = asyncio.get_running_loop().create_future()
            await self._complete
