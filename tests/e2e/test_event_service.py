"""EventService over a real gRPC channel on loopback, delivering to the fake Intercom."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.config import QueueConfig, RetryConfig, ServerConfig, SpoolConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, SidecarFactory

pytestmark = pytest.mark.e2e

Ack = event_pb2.Ack
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
DELIVERED_MODE = (("x-ack-mode", "delivered"),)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def identify(message_id: str, user_id: str = "u1", **traits: Any) -> event_pb2.Event:
    return event_pb2.Event(message_id=message_id, user_id=user_id, identify=event_pb2.Identify(traits=struct(traits)))


def track(message_id: str, user_id: str = "u1", event: str = "Order Completed", **properties: Any) -> event_pb2.Event:
    return event_pb2.Event(
        message_id=message_id,
        user_id=user_id,
        track=event_pb2.Track(event=event, properties=struct(properties)),
    )


async def stream(sidecar: Sidecar, events: list[event_pb2.Event], metadata: Any = ()) -> dict[str, event_pb2.Ack]:
    async def requests() -> AsyncIterator[event_pb2.Event]:
        for event in events:
            yield event

    acks = [ack async for ack in sidecar.stub.Stream(requests(), metadata=metadata, timeout=30)]
    assert len(acks) == len(events)
    by_id = {ack.message_id: ack for ack in acks}
    assert len(by_id) == len(events), "one ack per message_id"
    return by_id


async def test_identify_then_track_reach_intercom(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    acks = await stream(
        sidecar,
        [
            identify("m1", email="ada@example.com", name="Ada Lovelace"),
            track("m2", revenue=19.99, currency="EUR", sku="A-1"),
        ],
    )
    assert {ack.message_id: ack.status for ack in acks.values()} == {
        "m1": Ack.STATUS_ACCEPTED,
        "m2": Ack.STATUS_ACCEPTED,
    }
    assert all(TRACE_ID.match(ack.trace_id) for ack in acks.values())
    await sidecar.app.wait_idle()

    contact = fake_intercom.state.contact_by_external_id("u1")
    assert contact is not None
    assert (contact.email, contact.name) == ("ada@example.com", "Ada Lovelace")
    events = [event for event in fake_intercom.state.events if event.event_name == "Order Completed"]
    assert len(events) == 1
    assert events[0].metadata == {"price": {"amount": 1999, "currency": "eur"}, "sku": "A-1"}


async def test_second_identify_is_a_single_update(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    await stream(sidecar, [identify("m1", email="ada@example.com")])
    await sidecar.app.wait_idle()
    before = len(fake_intercom.ledger)
    await stream(sidecar, [identify("m2", name="Ada")])
    await sidecar.app.wait_idle()
    calls = [(entry.method, entry.path) for entry in fake_intercom.ledger[before:]]
    contact = fake_intercom.state.contact_by_external_id("u1")
    assert contact is not None
    assert calls == [("PUT", f"/contacts/{contact.id}")]
    assert contact.name == "Ada"


def _without(field: str) -> Callable[[event_pb2.Event], None]:
    return lambda event: event.ClearField(field)


INVALID_CASES: list[tuple[str, Callable[[event_pb2.Event], None], str]] = [
    ("no message_id", _without("message_id"), "message_id: is required"),
    ("no user", lambda e: e.ClearField("user_id"), "user_id: one of user_id and anonymous_id is required"),
    ("no call", lambda e: e.ClearField("track"), "call: exactly one of identify, track, page, screen, group or alias"),
    ("empty event name", lambda e: setattr(e.track, "event", "  "), "track.event: must not be empty"),
    ("group without id", lambda e: e.group.SetInParent(), "group.group_id: is required"),
    ("timestamp before 1970", lambda e: e.timestamp.FromSeconds(-5), "timestamp: is before 1970-01-01"),
    ("timestamp far in future", lambda e: e.timestamp.FromSeconds(32503680000), "timestamp: is too far in the future"),
    ("oversized", lambda e: e.track.properties.update({"blob": "x" * 40_000}), "event: is 4"),
]


async def test_each_bad_event_is_invalid_and_names_the_field_while_good_ones_go_through(
    sidecar: Sidecar, fake_intercom: FakeIntercom
) -> None:
    events = [identify("good-0", email="ada@example.com")]
    for number, (_, spoil, _) in enumerate(INVALID_CASES):
        event = track(f"bad-{number}")
        spoil(event)
        events.append(event)
        events.append(track(f"good-{number + 1}", event=f"Step {number}"))
    acks = [ack async for ack in sidecar.stub.Stream(_iterate(events), timeout=30)]
    assert len(acks) == len(events)
    bad = [ack for ack in acks if ack.message_id.startswith("bad-") or not ack.message_id]
    good = [ack for ack in acks if ack.message_id.startswith("good-")]
    assert len(bad) == len(INVALID_CASES)
    for ack in bad:
        assert ack.status == Ack.STATUS_INVALID
        assert TRACE_ID.match(ack.trace_id)
    reasons = sorted(ack.reason for ack in bad)
    for name, _, expected in INVALID_CASES:
        assert any(reason.startswith(expected) for reason in reasons), f"{name}: no ack says {expected!r}: {reasons}"
    assert [ack.status for ack in good] == [Ack.STATUS_ACCEPTED] * (len(INVALID_CASES) + 1)
    await sidecar.app.wait_idle()
    delivered = {event.event_name for event in fake_intercom.state.events}
    assert delivered == {f"Step {number}" for number in range(len(INVALID_CASES))}


async def _iterate(events: list[event_pb2.Event]) -> AsyncIterator[event_pb2.Event]:
    for event in events:
        yield event


async def test_full_queue_answers_retry_later(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    sidecar = await start_sidecar(
        queue=QueueConfig(max_events=2, workers=1, full_retry_after_seconds=2.5),
        spool=SpoolConfig(kind="sqlite", directory=tmp_path / "spool", max_events=2),
    )
    request = service_pb2.SendRequest(events=[identify(f"m{n}", user_id=f"user-{n}") for n in range(3)])
    response = await sidecar.stub.Send(request, timeout=30)
    assert [ack.status for ack in response.acks] == [Ack.STATUS_ACCEPTED, Ack.STATUS_ACCEPTED, Ack.STATUS_RETRY_LATER]
    full = response.acks[2]
    assert full.reason.startswith("the spool is full (2 of 2 events, ")
    assert full.retry_after.ToTimedelta().total_seconds() == 2.5
    await sidecar.app.wait_idle()
    again = await sidecar.stub.Send(service_pb2.SendRequest(events=[request.events[2]]), timeout=30)
    assert again.acks[0].status == Ack.STATUS_ACCEPTED


async def test_delivered_mode_reports_intercoms_outcome(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    fake_intercom.faults.script("POST", "/events", status=400, code="parameter_invalid", message="Bad metadata")
    response = await sidecar.stub.Send(
        service_pb2.SendRequest(events=[identify("m1", email="ada@example.com"), track("m2")]),
        metadata=DELIVERED_MODE,
        timeout=30,
    )
    delivered, rejected = response.acks
    assert (delivered.message_id, delivered.status, delivered.reason) == ("m1", Ack.STATUS_DELIVERED, "")
    assert (rejected.message_id, rejected.status) == ("m2", Ack.STATUS_REJECTED)
    assert rejected.reason == "intercom 400 parameter_invalid: Bad metadata (POST /events)"


async def test_a_track_before_its_identify_creates_the_user(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    response = await sidecar.stub.Send(
        service_pb2.SendRequest(events=[track("m1", user_id="newcomer")]), metadata=DELIVERED_MODE, timeout=30
    )
    assert response.acks[0].status == Ack.STATUS_DELIVERED
    contact = fake_intercom.state.contact_by_external_id("newcomer")
    assert contact is not None
    calls = [(entry.method, entry.path, entry.status) for entry in fake_intercom.ledger]
    assert [call for call in calls if call[1] != "/data_attributes"] == [
        ("POST", "/events", 404),
        ("POST", "/contacts", 200),
        ("POST", "/events", 202),
    ]


async def test_delivered_mode_on_a_stream_retries_transient_failures(
    sidecar: Sidecar, fake_intercom: FakeIntercom
) -> None:
    fake_intercom.faults.script("POST", "/contacts", status=503, times=2)
    acks = await stream(sidecar, [identify("m1", email="ada@example.com")], metadata=DELIVERED_MODE)
    assert acks["m1"].status == Ack.STATUS_DELIVERED
    assert [entry.status for entry in fake_intercom.ledger if entry.path == "/contacts"] == [503, 503, 200]


async def test_invalid_ack_mode_is_refused(sidecar: Sidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await sidecar.stub.Send(service_pb2.SendRequest(), metadata=(("x-ack-mode", "eventually"),), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-ack-mode" in (raised.value.details() or "")


async def test_filtered_events_say_why(sidecar: Sidecar) -> None:
    event = track("m1")
    event.integrations.update({"All": False})
    page = event_pb2.Event(message_id="m2", user_id="u1", page=event_pb2.Page(name="Home"))
    response = await sidecar.stub.Send(service_pb2.SendRequest(events=[event, page]), timeout=30)
    assert [(ack.status, ack.reason) for ack in response.acks] == [
        (Ack.STATUS_FILTERED, "integrations.All is false and integrations.Intercom is not enabled"),
        (Ack.STATUS_FILTERED, "page: not sent to Intercom (INTERCOM_SIDECAR_PAGE_MODE is ignore)"),
    ]


async def test_ack_trace_id_is_the_event_span_and_continues_the_callers_trace(sidecar: Sidecar) -> None:
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    metadata = (("traceparent", f"00-{caller_trace}-00f067aa0ba902b7-01"),)
    response = await sidecar.stub.Send(service_pb2.SendRequest(events=[track("m1")]), metadata=metadata, timeout=30)
    assert response.acks[0].trace_id == caller_trace
    await sidecar.app.wait_idle()
    spans = [span for span in sidecar.spans.get_finished_spans() if span.name == "intercom_sidecar.event"]
    assert len(spans) == 1
    assert format(spans[0].context.trace_id, "032x") == caller_trace
    assert spans[0].parent is not None and spans[0].parent.span_id == 0x00F067AA0BA902B7
    assert spans[0].attributes is not None and spans[0].attributes["segment.message_id"] == "m1"


async def test_health_serving_and_reflection(sidecar: Sidecar) -> None:
    health = health_pb2_grpc.HealthStub(sidecar.channel)
    for service in ("", "intercom_sidecar.v1.EventService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(sidecar.channel)
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    services = {service.name async for reply in replies for service in reply.list_services_response.service}
    assert {"intercom_sidecar.v1.EventService", "grpc.health.v1.Health"} <= services


async def test_stop_reports_not_serving_then_refuses_new_work(sidecar: Sidecar) -> None:
    health = health_pb2_grpc.HealthStub(sidecar.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(sidecar.app.stop())
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()
    await stopping
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await sidecar.stub.Send(service_pb2.SendRequest(events=[track("m1")]), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_stop_ends_open_streams_after_their_owed_acks(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    """A delivered-mode stream left open by its client gets every owed ack, then ends UNAVAILABLE. An event
    still retrying when the grace ends is durable in the spool, so its ack is ACCEPTED."""
    sidecar = await start_sidecar(
        server=ServerConfig(listen="127.0.0.1:0", shutdown_grace_seconds=0.5),
        retry=RetryConfig(initial_backoff_seconds=0.01, max_backoff_seconds=0.05, max_elapsed_seconds=600),
    )
    outbox: asyncio.Queue[event_pb2.Event] = asyncio.Queue()

    async def requests() -> AsyncIterator[event_pb2.Event]:
        while True:
            yield await outbox.get()

    call = sidecar.stub.Stream(requests(), metadata=DELIVERED_MODE, timeout=30)
    outbox.put_nowait(identify("m1", email="ada@example.com"))
    first = await call.read()
    assert (first.message_id, first.status) == ("m1", Ack.STATUS_DELIVERED)
    fake_intercom.faults.script("POST", "/events", status=503, times=1000)  # m2 will still be retrying
    outbox.put_nowait(track("m2"))
    await _until(lambda: any(entry.path == "/events" for entry in fake_intercom.ledger))
    await sidecar.app.stop()
    owed = await call.read()
    assert (owed.message_id, owed.status, owed.reason) == (
        "m2",
        Ack.STATUS_ACCEPTED,
        "kept in the spool; delivery continues after the restart",
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (raised.value.details() or "")


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until `condition()` holds (the sidecar and the fake run in this loop)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def test_health_port_serves_health_only(start_sidecar: SidecarFactory) -> None:
    sidecar = await start_sidecar(server=ServerConfig(listen="127.0.0.1:0", health_listen="127.0.0.1:0"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.app.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "intercom_sidecar.v1.EventService", "liveness"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await service_pb2_grpc.EventServiceStub(channel).Send(service_pb2.SendRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
