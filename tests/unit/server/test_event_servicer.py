"""EventServicer over a real Intake (in-memory spool, delivery not started), without gRPC's transport: the acks of
a `Send` batch come back in event order from one wait, and a stream gets one ack per event, then ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.config import LimitsConfig, MappingConfig, QueueConfig, RetryConfig
from intercom_sidecar.delivery.pipeline import Pipeline
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.intake import Intake
from intercom_sidecar.model.acks import AckInfo, AckStatus
from intercom_sidecar.model.from_proto import event_from_proto
from intercom_sidecar.server.servicer import EventServicer
from tests.unit.delivery.test_pipeline import FakeSender

pytestmark = pytest.mark.timeout(10)

Ack = event_pb2.Ack


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()


def _track(message_id: str, name: str = "Order Completed") -> bytes:
    event = event_pb2.Event(message_id=message_id, user_id="u1", track=event_pb2.Track(event=name))
    return event.SerializeToString()


UNREADABLE = b"\x0a\x02m9\x12\x05u1"  # message_id "m9", then a user_id cut short
EVENTS = [_track("m1"), UNREADABLE, _track("m2"), _track("m3", name=" ")]
STATUSES = [Ack.STATUS_ACCEPTED, Ack.STATUS_INVALID, Ack.STATUS_ACCEPTED, Ack.STATUS_INVALID]


async def _intake() -> tuple[Intake, MemorySpool]:
    spool = MemorySpool(max_events=100, max_bytes=1_000_000)
    await spool.open()
    pipeline = Pipeline(FakeSender(), QueueConfig(), RetryConfig())  # not started: nothing is delivered
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    return Intake(Spooler(spool, pipeline), tracer, MappingConfig(), durable=True), spool


def _send_request(events: list[bytes]) -> bytes:
    return b"".join(b"\x0a" + bytes([len(event)]) + event for event in events)


async def test_send_answers_every_event_in_order() -> None:
    intake, spool = await _intake()
    servicer = EventServicer(intake, LimitsConfig())

    response = await servicer.Send(_send_request(EVENTS), _Context())  # type: ignore[arg-type]

    assert [ack.status for ack in response.acks] == STATUSES
    assert [ack.message_id for ack in response.acks] == ["m1", "m9", "m2", "m3"]
    assert (
        response.acks[1].reason == "event: is not valid protobuf wire format (field 2 runs past the end of its message)"
    )
    assert len({ack.trace_id for ack in response.acks}) == 4
    assert all(len(ack.trace_id) == 32 for ack in response.acks)
    assert spool.room()[0] == 98, "the two valid events are in the spool"

    again = await servicer.Send(_send_request(EVENTS[:1]), _Context())  # type: ignore[arg-type]
    assert [ack.status for ack in again.acks] == [Ack.STATUS_DUPLICATE]


async def test_send_of_only_invalid_events_does_not_wait() -> None:
    intake, _ = await _intake()
    servicer = EventServicer(intake, LimitsConfig())
    response = await servicer.Send(_send_request([UNREADABLE, _track("m3", name="")]), _Context())  # type: ignore[arg-type]
    assert [ack.status for ack in response.acks] == [Ack.STATUS_INVALID] * 2


async def test_a_stream_gets_one_ack_per_event_then_ends() -> None:
    intake, _ = await _intake()
    servicer = EventServicer(intake, LimitsConfig())

    async def requests() -> AsyncIterator[bytes]:
        for event in EVENTS:
            yield event

    acks = [ack async for ack in servicer.Stream(requests(), _Context())]  # type: ignore[arg-type]
    assert sorted((ack.message_id, ack.status) for ack in acks) == sorted(
        zip(["m1", "m9", "m2", "m3"], STATUSES, strict=True)
    )


async def test_submit_delivers_once_and_never_from_within_the_call() -> None:
    intake, _ = await _intake()
    delivered: list[AckInfo] = []
    got = asyncio.Event()

    def deliver(ack: AckInfo) -> None:
        delivered.append(ack)
        got.set()

    message = event_pb2.Event.FromString(_track("m1"))
    ack = intake.submit(
        "m1",
        lambda now: event_from_proto(message, now=now, limits=LimitsConfig()),
        lambda traceparent: message.SerializeToString(),
        deliver,
        wait=False,
    )
    assert ack is None and delivered == []
    await got.wait()
    await asyncio.sleep(0)  # anything more would come in the same or the next turn
    assert [(a.message_id, a.status) for a in delivered] == [("m1", AckStatus.ACCEPTED)]


async def test_a_stream_keeps_reading_while_its_acks_are_not_taken_and_closes_cleanly() -> None:
    """A client that sends but does not read its acks: gRPC stops pulling acks from the handler, yet every event
    is read and spooled (the reader is its own task), and closing the call ends that task."""
    intake, spool = await _intake()
    servicer = EventServicer(intake, LimitsConfig())
    read_to_the_end = asyncio.Event()

    async def requests() -> AsyncIterator[bytes]:
        for number in range(20):
            yield _track(f"m{number}")
        read_to_the_end.set()

    call = servicer.Stream(requests(), _Context())  # type: ignore[arg-type]
    assert isinstance(call, AsyncGenerator)
    first = await call.__anext__()  # one ack taken, then none
    assert first.status == Ack.STATUS_ACCEPTED
    await read_to_the_end.wait()
    for _ in range(100):  # the last appends finish in the spooler's task, a turn or two later
        if spool.room()[0] == 80:
            break
        await asyncio.sleep(0)
    assert spool.room()[0] == 80, "every event was taken though its ack was not read"

    await call.aclose()  # what gRPC does when the call ends
    await asyncio.sleep(0)
    assert not servicer._readers, "the reader task ended with the call"
