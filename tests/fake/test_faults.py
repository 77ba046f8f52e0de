"""Fault injection: 5xx share, latency, connection resets, 429 storms and scripted answers."""

from __future__ import annotations

import time

import httpx
import pytest

from intercom_sidecar.fake import FakeIntercom
from tests.fake.conftest import FakeClock, checked_client


async def test_error_rate_replaces_answers_without_side_effects(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.faults.error_rate = 1.0
    response = await client.post("/contacts", json={"external_id": "u1"})
    assert response.status_code == 503
    assert response.json()["errors"] == [{"code": "service_unavailable", "message": "Service Unavailable"}]
    assert "x-ratelimit-remaining" in response.headers
    assert fake.state.contacts == {}
    assert (fake.ledger[-1].status, fake.ledger[-1].fault) == (503, "error_rate")
    fake.faults.error_status = 500
    assert (await client.get("/me")).status_code == 500
    fake.faults.error_rate = 0.0
    assert (await client.get("/me")).status_code == 200


async def test_error_rate_is_repeatable_for_a_seed(clock: FakeClock) -> None:
    runs = []
    for _ in range(2):
        async with FakeIntercom(seed=3, clock=clock) as fake:
            fake.faults.error_rate = 0.5
            async with checked_client(fake) as client:
                runs.append([(await client.get("/me")).status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


async def test_latency_delays_answers(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.faults.latency = 0.2
    started = time.monotonic()
    response = await client.get("/me")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_reset_drops_the_connection_without_an_answer(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.faults.reset_rate = 1.0
    with pytest.raises(httpx.TransportError):
        await client.post("/contacts", json={"external_id": "u1"})
    assert (fake.ledger[-1].status, fake.ledger[-1].fault) == (0, "reset")
    assert fake.state.contacts == {}
    fake.faults.reset_rate = 0.0
    assert (await client.get("/me")).status_code == 200


async def test_throttle_storm_until_a_time(fake: FakeIntercom, client: httpx.AsyncClient, clock: FakeClock) -> None:
    fake.faults.throttle_for(30)
    response = await client.get("/me")
    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "rate_limit_exceeded"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == "1700000030"
    clock.advance(29)
    assert (await client.get("/me")).status_code == 429
    clock.advance(1)
    assert (await client.get("/me")).status_code == 200


async def test_scripted_answers_match_method_and_path_prefix(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.faults.script("POST", "/contacts", status=503, times=2)
    fake.faults.script("*", "/me", status=500, code="server_error", message="boom")
    assert (await client.get("/me")).json()["errors"] == [{"code": "server_error", "message": "boom"}]
    assert (await client.get("/me")).status_code == 200
    statuses = [(await client.post("/contacts", json={"external_id": f"u{i}"})).status_code for i in range(3)]
    assert statuses == [503, 503, 200]
    assert fake.faults.scripted == []
    assert [e.fault for e in fake.requests("POST", "/contacts")] == ["scripted", "scripted", None]


async def test_scripted_reset_and_after_processing(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.faults.script("POST", "/contacts", status=0)
    with pytest.raises(httpx.TransportError):
        await client.post("/contacts", json={"external_id": "u1"})
    assert fake.state.contacts == {}
    # A gateway timeout after the backend committed: the contact exists, the retry conflicts.
    fake.faults.script("POST", "/contacts", status=504, after_processing=True)
    timed_out = await client.post("/contacts", json={"external_id": "u1"})
    assert timed_out.status_code == 504
    contact = fake.state.contact_by_external_id("u1")
    assert contact is not None
    retry = await client.post("/contacts", json={"external_id": "u1"})
    assert retry.status_code == 409
    assert retry.json()["errors"][0]["message"].endswith(f"id={contact.id}")


async def test_faults_over_http(fake: FakeIntercom, client: httpx.AsyncClient, clock: FakeClock) -> None:
    settings = {
        "error_rate": 1,
        "error_status": 502,
        "latency": 0,
        "throttle_until": None,
        "scripted": [{"method": "GET", "path_prefix": "/me", "status": 429, "times": 1}],
    }
    configured = await client.post("/_fake/faults", json=settings)
    assert configured.status_code == 200
    assert configured.json()["error_status"] == 502 and len(configured.json()["scripted"]) == 1
    assert (await client.get("/me")).status_code == 429
    assert (await client.get("/me")).status_code == 502
    assert (await client.post("/_fake/faults", json={"clear": True, "throttle_for": 10})).status_code == 200
    assert fake.faults.throttle_until == clock() + 10 and fake.faults.error_rate == 0
    assert (await client.get("/me")).status_code == 429
    before = (await client.get("/_fake/faults")).json()
    for bad in (
        {"error_rate": 2},
        {"error_status": 404},
        {"nonsense": 1},
        {"latency": 1, "scripted": [{"status": 999}]},
        {"clear": True, "scripted": [{"method": "GET"}]},
    ):
        response = await client.post("/_fake/faults", json=bad)
        assert response.status_code == 400, bad
        assert "error" in response.json()
    assert (await client.get("/_fake/faults")).json() == before  # a rejected change changes nothing
    limits = await client.post("/_fake/faults", json={"clear": True, "limit_per_window": 5, "window_seconds": 60})
    assert (limits.json()["limit_per_window"], limits.json()["window_seconds"]) == (5, 60)
    assert (await client.get("/me")).headers["x-ratelimit-limit"] == "5"
    assert (await client.get("/_fake/faults")).json() == (await client.get("/_fake/faults")).json()
