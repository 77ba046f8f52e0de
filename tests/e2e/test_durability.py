"""The ACCEPTED promise: events are durable in the spool, deduplicated, recovered after a restart, and
dead-lettered with their reason when Intercom refuses them."""

from __future__ import annotations

import asyncio
import json

import pytest
from google.protobuf import struct_pb2

from intercom_sidecar.__main__ import _parser
from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import QueueConfig, ServerConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, SidecarFactory

pytestmark = pytest.mark.e2e

Ack = event_pb2.Ack


T0 = 1_790_000_000


def track(message_id: str, user_id: str = "u1", n: int = 0) -> event_pb2.Event:
    """Intercom treats two events of one user with the same name and created_at as one: each `n` is a second."""
    values = struct_pb2.Struct()
    values.update({"n": n})
    message = event_pb2.Event(
        message_id=message_id, user_id=user_id, track=event_pb2.Track(event="Paid", properties=values)
    )
    message.timestamp.FromSeconds(T0 + n)
    return message


async def send(sidecar: Sidecar, *events: event_pb2.Event, delivered: bool = False) -> list[event_pb2.Ack]:
    metadata = (("x-ack-mode", "delivered"),) if delivered else ()
    response = await sidecar.stub.Send(service_pb2.SendRequest(events=events), metadata=metadata, timeout=30)
    return list(response.acks)


async def test_a_repeated_message_id_is_a_duplicate_across_calls(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    first = await send(sidecar, track("m1"), track("m1"))
    again = await send(sidecar, track("m1"))
    assert [ack.status for ack in [*first, *again]] == [Ack.STATUS_ACCEPTED, Ack.STATUS_DUPLICATE, Ack.STATUS_DUPLICATE]
    await sidecar.app.wait_idle()
    assert len(fake_intercom.state.events) == 1


async def test_events_left_at_stop_are_delivered_once_after_a_restart(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    quick_stop = ServerConfig(listen="127.0.0.1:0", shutdown_grace_seconds=0.2)
    fake_intercom.faults.script("POST", "/events", status=503, times=10_000)  # Intercom is down
    first = await start_sidecar(server=quick_stop)
    acks = await send(first, *(track(f"m{n}", user_id=f"user-{n % 3}", n=n) for n in range(20)))
    assert {ack.status for ack in acks} == {Ack.STATUS_ACCEPTED}
    await first.app.stop()  # the grace runs out while Intercom is down: everything stays in the spool
    assert fake_intercom.state.events == []

    fake_intercom.faults.clear()  # Intercom is back
    second = await start_sidecar(server=quick_stop, spool=first.app.config.spool)
    await second.app.wait_idle()
    delivered = sorted((event.metadata["n"], event.created_at) for event in fake_intercom.state.events)
    assert delivered == [(n, T0 + n) for n in range(20)], "each once, with its original created_at"
    per_user = {}
    for entry in fake_intercom.ledger:
        if entry.path == "/events" and entry.status == 202:
            per_user.setdefault(entry.body["user_id"], []).append(entry.body["metadata"]["n"])
    assert all(numbers == sorted(numbers) for numbers in per_user.values()), f"per-user order: {per_user}"
    again = await send(second, track("m0", user_id="user-0", n=0))
    assert again[0].status == Ack.STATUS_DUPLICATE, "the dedupe window survives the restart"


async def test_a_backlog_larger_than_the_queue_bound_is_recovered_whole(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    quick_stop = ServerConfig(listen="127.0.0.1:0", shutdown_grace_seconds=0.2)
    fake_intercom.faults.script("POST", "/events", status=503, times=10_000)
    first = await start_sidecar(server=quick_stop)
    await send(first, *(track(f"m{n}", user_id=f"user-{n}", n=n) for n in range(20)))
    await first.app.stop()
    fake_intercom.faults.clear()

    smaller = QueueConfig(max_events=5, workers=4)  # the bound was lowered while 20 events waited
    second = await start_sidecar(server=quick_stop, spool=first.app.config.spool, queue=smaller)
    await second.app.wait_idle()
    assert len(fake_intercom.state.events) == 20


async def test_a_refused_event_is_a_dead_letter_with_its_reason(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    fake_intercom.faults.script("POST", "/events", status=422, code="parameter_invalid", message="Bad event name")
    [ack] = await send(sidecar, track("m1"), delivered=True)
    assert ack.status == Ack.STATUS_REJECTED
    assert sidecar.app.spool is not None
    [letter] = await sidecar.app.spool.list_dead_letters()
    assert (letter.message_id, letter.status, letter.code, letter.attempts, letter.trace_id) == (
        "m1",
        422,
        "parameter_invalid",
        1,
        ack.trace_id,
    )
    assert letter.reason == "intercom 422 parameter_invalid: Bad event name (POST /events)"
    assert sidecar.app.spool.depth() == (0, 0)


async def test_dlq_lists_and_replays_into_the_running_sidecar(
    sidecar: Sidecar, fake_intercom: FakeIntercom, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_intercom.faults.script("POST", "/events", status=400, code="parameter_invalid", message="Try again", times=2)
    acks = await send(sidecar, track("m1", n=1), track("m2", n=2), delivered=True)
    assert [ack.status for ack in acks] == [Ack.STATUS_REJECTED, Ack.STATUS_REJECTED]
    spool_dir = str(sidecar.app.config.spool.directory)

    # The REJECTED ack does not wait for the dead letter's commit (it rides in the spool's next group commit).
    for _ in range(500):
        assert await dlq("--spool-dir", spool_dir, "list", "--json") == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        if len(listed) == 2:
            break
        await asyncio.sleep(0.01)
    assert [(row["message_id"], row["type"], row["status"], row["reason"]) for row in listed] == [
        ("m1", "track", 400, "intercom 400 parameter_invalid: Try again (POST /events)"),
        ("m2", "track", 400, "intercom 400 parameter_invalid: Try again (POST /events)"),
    ]

    assert await dlq("--spool-dir", spool_dir, "replay", "--message-id", "m2") == 0
    assert capsys.readouterr().out.startswith("replayed 1 of 1 dead letters")
    for _ in range(600):  # the running sidecar polls for replays every 2 s
        if fake_intercom.state.events:
            break
        await asyncio.sleep(0.01)
    assert [event.metadata["n"] for event in fake_intercom.state.events] == [2]
    await sidecar.app.wait_idle()

    assert await dlq("--spool-dir", spool_dir, "purge") == 2, "purge without a filter is refused"
    assert await dlq("--spool-dir", spool_dir, "purge", "--all") == 0
    assert capsys.readouterr().out.strip().endswith("purged 1 dead letters")


async def dlq(*argv: str) -> int:
    args = _parser().parse_args(["dlq", *argv])
    code: int = await args.run(args)
    return code


async def test_per_user_order_holds_under_random_transient_failures(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    sidecar = await start_sidecar(queue=QueueConfig(workers=8))
    fake_intercom.faults.error_rate = 0.3  # a third of Intercom's answers are 503s
    events = [track(f"m{n}", user_id=f"user-{n % 10}", n=n) for n in range(150)]
    acks = await send(sidecar, *events)
    assert {ack.status for ack in acks} == {Ack.STATUS_ACCEPTED}
    await sidecar.app.wait_idle()
    fake_intercom.faults.error_rate = 0.0

    assert sorted(event.metadata["n"] for event in fake_intercom.state.events) == list(range(150))
    per_user: dict[str, list[int]] = {}
    for entry in fake_intercom.ledger:
        if entry.path == "/events" and entry.status == 202:
            per_user.setdefault(entry.body["user_id"], []).append(entry.body["metadata"]["n"])
    assert all(numbers == sorted(numbers) for numbers in per_user.values()), per_user
    assert sum(1 for entry in fake_intercom.ledger if entry.status == 503) > 10, "failures did happen"


async def test_a_backlog_beyond_the_window_waits_in_the_spool_and_keeps_per_user_order(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    fake_intercom.faults.script("POST", "/events", status=503, times=40)  # a short outage: retries pile up
    sidecar = await start_sidecar(queue=QueueConfig(max_events=5, workers=4))
    events = [track(f"m{n}", user_id=f"user-{n % 3}", n=n) for n in range(30)]

    acks = await send(sidecar, *events[:5]) + await send(sidecar, *events[5:], delivered=True)

    assert {ack.status for ack in acks} == {Ack.STATUS_ACCEPTED}
    # Callers asking for the final outcome cannot hold the sidecar to it while a backlog waits on disk.
    assert {ack.reason for ack in acks[5:]} == {
        "stored in the spool behind a backlog; delivered when the backlog reaches it"
    }
    await sidecar.app.wait_idle()
    assert sidecar.app.spool is not None and sidecar.app.spool.depth() == (0, 0)
    delivered = sorted((event.metadata["n"], event.created_at) for event in fake_intercom.state.events)
    assert delivered == [(n, T0 + n) for n in range(30)], "each once, with its original created_at"
    per_user: dict[str, list[int]] = {}
    for entry in fake_intercom.ledger:
        if entry.path == "/events" and entry.status == 202:
            per_user.setdefault(entry.body["user_id"], []).append(entry.body["metadata"]["n"])
    assert all(numbers == sorted(numbers) for numbers in per_user.values()), f"per-user order: {per_user}"
    # A deferred event's delivery is traced under its own span, in the event's trace.
    spans = sidecar.spans.get_finished_spans()
    event_span = next(
        s for s in spans if s.name == "intercom_sidecar.event" and s.attributes["segment.message_id"] == "m29"
    )
    later = [s for s in spans if s.context.trace_id == event_span.context.trace_id and s is not event_span]
    assert any(s.parent is not None and s.parent.span_id == event_span.context.span_id for s in later)
