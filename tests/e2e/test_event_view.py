"""The event view's API on a running sidecar: events sent over gRPC show up with their acks, the Intercom requests
they became (as the fake Intercom recorded them), outcomes and trace ids; a dead letter replayed is delivered."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import ServerConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, SidecarFactory

pytestmark = pytest.mark.e2e

REPLAY = {"X-Intercom-Sidecar": "replay"}
ADMIN = ServerConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", shutdown_grace_seconds=1.0)


def by_message(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {event["message_id"]: event for event in reversed(events)}  # the newest record of each message wins


async def send(sidecar: Sidecar, *events: event_pb2.Event) -> dict[str, event_pb2.Ack]:
    response = await sidecar.stub.Send(service_pb2.SendRequest(events=events), timeout=30)
    await sidecar.app.pipeline.wait_idle()
    return {ack.message_id: ack for ack in response.acks}


async def test_events_their_requests_and_a_replayed_dead_letter(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    sidecar = await start_sidecar(server=ADMIN)
    assert sidecar.app.admin_port > 0
    fake_intercom.faults.script("POST", "/events", status=422, code="parameter_invalid", message="bad", times=100)
    acks = await send(
        sidecar,
        event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify()),
        event_pb2.Event(message_id="m2", user_id="u1", track=event_pb2.Track(event="Refused")),
        event_pb2.Event(message_id="m3", user_id="u1", page=event_pb2.Page(name="Home")),
        event_pb2.Event(message_id="m4", track=event_pb2.Track(event="No user")),
    )

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sidecar.app.admin_port}") as client:
        listed = (await client.get("/api/events")).json()
        events = by_message(listed["events"])
        assert [event["message_id"] for event in listed["events"]] == ["m4", "m3", "m2", "m1"], "newest first"
        summary = {key: (e["call_type"], e["ack_status"], e["outcome"]) for key, e in events.items()}
        assert summary == {
            "m1": ("identify", "accepted", "delivered"),
            "m2": ("track", "accepted", "rejected"),
            "m3": ("page", "filtered", ""),
            "m4": ("", "invalid", ""),  # it did not decode: no call type
        }
        for message_id, event in events.items():
            assert event["trace_id"] == acks[message_id].trace_id, "the trace id the caller got"
        assert events["m2"]["event_name"] == "Refused" and events["m2"]["user_id"] == "u1"
        assert events["m2"]["outcome_status"] == 422
        assert "parameter_invalid" in events["m2"]["outcome_reason"]

        # Each request is the one the fake Intercom received (matched by Intercom's request id).
        received = {entry.request_id: entry for entry in fake_intercom.ledger}
        for message_id in ("m1", "m2"):
            requests = events[message_id]["requests"]
            assert requests, message_id
            for request in requests:
                entry = received[request["request_id"]]
                assert (request["method"], request["status"], request["attempt"]) == (entry.method, entry.status, 1)
        [refused] = events["m2"]["requests"]
        assert (refused["route"], refused["status"]) == ("/events", 422)
        assert events["m3"]["requests"] == [] and events["m4"]["requests"] == []

        status = (await client.get("/api/status")).json()
        assert status["counts"] == {"accepted": 3, "delivered": 1, "filtered": 1, "dead_lettered": 1}
        assert (status["queue_depth"], status["paused"]) == (0, None)
        assert status["rate_limit"]["remaining"] is not None, "the fake sends X-RateLimit-* headers"

        [letter] = (await client.get("/api/dead-letters")).json()["dead_letters"]
        assert (letter["message_id"], letter["status"], letter["trace_id"]) == ("m2", 422, acks["m2"].trace_id)

        refused_replay = await client.post("/api/dead-letters/replay", json={"message_ids": ["m2"]})
        assert refused_replay.status_code == 403, "no custom header: nothing is replayed"
        fake_intercom.faults.clear()
        replayed = await client.post("/api/dead-letters/replay", json={"message_ids": ["m2"]}, headers=REPLAY)
        assert replayed.json() == {"replayed": 1}
        await sidecar.app.pipeline.wait_idle()  # queued by the request itself, not by the 2 s poll

        since = (await client.get(f"/api/events?since={listed['revision']}")).json()["events"]
        [again] = [event for event in since if event["source"] == "replayed"]
        assert (again["message_id"], again["outcome"], again["trace_id"]) == ("m2", "delivered", acks["m2"].trace_id)
        assert [request["status"] for request in again["requests"]] == [202]
        assert (await client.get("/api/dead-letters")).json()["dead_letters"] == []
        counts = (await client.get("/api/status")).json()["counts"]
        assert counts == {"accepted": 4, "delivered": 2, "filtered": 1, "dead_lettered": 1}
        assert "# HELP" in (await client.get("/metrics")).text, "the admin address serves /metrics too"
