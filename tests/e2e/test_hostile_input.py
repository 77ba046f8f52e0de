"""Hostile input over real gRPC: garbage costs only its own ack, limits answer with the setting's name."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import grpc
import pytest

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import LimitsConfig, ServerConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, SidecarFactory
from tests.e2e.test_event_service import TRACE_ID, track
from tests.wire_bytes import deeply_nested_traits, field

pytestmark = pytest.mark.e2e

Ack = event_pb2.Ack
STREAM = "/intercom_sidecar.v1.EventService/Stream"
SEND = "/intercom_sidecar.v1.EventService/Send"


def garbage(rng: random.Random, number: int) -> bytes:
    """One message that is not a valid event, of a kind chosen by `number`."""
    good = track(f"bad-{number}").SerializeToString()
    kinds = [
        lambda: field(1, f"bad-{number}".encode()) + field(2, b"\xff\xfeu") + field(11, field(1, b"Bought")),
        lambda: deeply_nested_traits(40, message_id=f"bad-{number}"),
        lambda: good[: rng.randrange(1, len(good))],
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))),
        lambda: field(1, f"bad-{number}".encode()) + b"\x0b",  # a group start: a wire type this API never uses
        lambda: field(1, b"bad id with spaces") + field(2, b"u1") + field(11, field(1, b"Bought")),
    ]
    return kinds[number % len(kinds)]()


async def test_garbage_on_a_stream_costs_only_its_own_ack(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    rng = random.Random(7)
    messages: list[bytes] = []
    for number in range(60):
        messages.append(garbage(rng, number))
        messages.append(track(f"good-{number}", event=f"Step {number}").SerializeToString())

    async def requests() -> AsyncIterator[bytes]:
        for message in messages:
            yield message

    call = sidecar.channel.stream_stream(STREAM, request_serializer=None, response_deserializer=Ack.FromString)
    acks = [ack async for ack in call(requests(), timeout=30)]

    assert len(acks) == len(messages), "one ack per message, and the stream ran to the end"
    good = [ack for ack in acks if ack.message_id.startswith("good-")]
    others = [ack for ack in acks if not ack.message_id.startswith("good-")]
    assert sorted(ack.message_id for ack in good) == sorted(f"good-{number}" for number in range(60))
    assert {ack.status for ack in good} == {Ack.STATUS_ACCEPTED}
    assert len(others) == 60
    assert {ack.status for ack in others} == {Ack.STATUS_INVALID}
    assert all(ack.reason and ":" in ack.reason and TRACE_ID.match(ack.trace_id) for ack in others)
    reasons = "\n".join(ack.reason for ack in others)
    assert "user_id: is not valid UTF-8" in reasons
    assert "nested deeper than protobuf's limit of 100 messages" in reasons
    assert "message_id: must be printable ASCII without spaces" in reasons
    await sidecar.app.pipeline.wait_idle()
    assert {event.event_name for event in fake_intercom.state.events} == {f"Step {n}" for n in range(60)}


async def test_a_bad_event_in_a_send_batch_gets_its_own_invalid_ack(sidecar: Sidecar) -> None:
    batch = (
        field(1, track("s1").SerializeToString())
        + field(1, b"\x0a\x02s2\x12\x02\xff\xff")
        + field(1, track("s3").SerializeToString())
    )
    send = sidecar.channel.unary_unary(
        SEND, request_serializer=None, response_deserializer=service_pb2.SendResponse.FromString
    )
    response = await send(batch, timeout=30)
    assert [(ack.message_id, ack.status) for ack in response.acks] == [
        ("s1", Ack.STATUS_ACCEPTED),
        ("s2", Ack.STATUS_INVALID),
        ("s3", Ack.STATUS_ACCEPTED),
    ]
    assert response.acks[1].reason == "user_id: is not valid UTF-8"


async def test_a_send_over_the_event_limit_is_refused_whole(start_sidecar: SidecarFactory) -> None:
    sidecar = await start_sidecar(limits=LimitsConfig(max_events_per_send=3))
    request = service_pb2.SendRequest(events=[track(f"m{n}") for n in range(4)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await sidecar.stub.Send(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND" in (caught.value.details() or "")
    assert "more than 3 events" in (caught.value.details() or "")
    assert sidecar.app.spool is not None and sidecar.app.spool.depth()[0] == 0, "nothing was taken"

    response = await sidecar.stub.Send(service_pb2.SendRequest(events=request.events[:3]), timeout=30)
    assert [ack.status for ack in response.acks] == [Ack.STATUS_ACCEPTED] * 3


async def test_a_malformed_send_request_is_invalid_argument(sidecar: Sidecar) -> None:
    send = sidecar.channel.unary_unary(
        SEND, request_serializer=None, response_deserializer=service_pb2.SendResponse.FromString
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(b"\x0a\x7f\x00", timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("not a serialized SendRequest: ")


async def test_a_message_over_the_transport_limit_is_resource_exhausted(start_sidecar: SidecarFactory) -> None:
    sidecar = await start_sidecar(
        server=ServerConfig(listen="127.0.0.1:0", shutdown_grace_seconds=5.0, max_message_bytes=4096),
        limits=LimitsConfig(max_event_bytes=4096),
    )
    big = track("big", blob="x" * 5000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in sidecar.stub.Stream(_one(big), timeout=30):
            pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    acks = [ack async for ack in sidecar.stub.Stream(_one(track("small")), timeout=30)]
    assert [(ack.message_id, ack.status) for ack in acks] == [("small", Ack.STATUS_ACCEPTED)], "the server lives on"


async def _one(event: event_pb2.Event) -> AsyncIterator[event_pb2.Event]:
    yield event
