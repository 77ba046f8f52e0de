"""The Prometheus scrape of a running sidecar: what happened is counted, and nothing accepted goes missing."""

from __future__ import annotations

import re

import httpx
import pytest

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import ServerConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import SidecarFactory

pytestmark = pytest.mark.e2e


def value(scrape: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in scrape.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{key}="{wanted}"' in (match.group(2) or "") for key, wanted in labels.items()):
            total += float(match.group(3))
    return total


async def test_scrape_counts_events_and_the_invariant_holds(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    sidecar = await start_sidecar(
        server=ServerConfig(listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", shutdown_grace_seconds=1.0)
    )
    fake_intercom.faults.script("POST", "/events", status=422, code="parameter_invalid", message="no")
    events = [
        event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify()),
        event_pb2.Event(message_id="m2", user_id="u1", track=event_pb2.Track(event="Refused")),
        event_pb2.Event(message_id="m3", user_id="u1", page=event_pb2.Page(name="Home")),
        event_pb2.Event(message_id="m4", track=event_pb2.Track(event="No user")),
    ]
    await sidecar.stub.Send(service_pb2.SendRequest(events=events), timeout=30)
    await sidecar.app.wait_idle()

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sidecar.app.metrics_port}") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    scrape = response.text
    prefix = "intercom_sidecar_events"
    accepted = value(scrape, f"{prefix}_accepted_total")
    delivered = value(scrape, f"{prefix}_delivered_total")
    filtered = value(scrape, f"{prefix}_filtered_total")
    dead = value(scrape, f"{prefix}_dead_lettered_total")
    queued = value(scrape, "intercom_sidecar_queue_depth")
    assert (accepted, delivered, filtered, dead, queued) == (3, 1, 1, 1, 0)
    assert accepted == delivered + filtered + dead + queued
    assert value(scrape, f"{prefix}_received_total", status="invalid") == 1
    assert value(scrape, "intercom_sidecar_intercom_requests_total") >= 2
    assert "u1" not in scrape and "Refused" not in scrape, "no user data in labels"
