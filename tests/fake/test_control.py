"""The /_fake/* inspection endpoints and the ledger."""

from __future__ import annotations

import json

import httpx
import pytest

from intercom_sidecar.fake import FakeIntercom
from tests.fake.conftest import FakeClock, checked_client


async def _traffic(fake: FakeIntercom, client: httpx.AsyncClient) -> str:
    fake.add_data_attribute("plan", "contact", "string")
    contact = await client.post("/contacts", json={"external_id": "u1", "custom_attributes": {"plan": "pro"}})
    await client.post("/companies", json={"company_id": "c1", "name": "Acme"})
    await client.post("/events", json={"event_name": "ordered", "created_at": 1, "user_id": "u1"})
    contact_id: str = contact.json()["id"]
    return contact_id


async def test_health_and_state(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    assert (await client.get("/_fake/health")).json() == {"status": "ok"}
    contact_id = await _traffic(fake, client)
    state = (await client.get("/_fake/state")).json()
    [contact] = state["contacts"]
    assert (contact["id"], contact["external_id"], contact["custom_attributes"]) == (
        contact_id,
        "u1",
        {"plan": "pro"},
    )
    assert [c["company_id"] for c in state["companies"]] == ["c1"]
    assert [(e["event_name"], e["contact_id"]) for e in state["events"]] == [("ordered", contact_id)]
    assert {"name": "plan", "model": "contact", "custom": True}.items() <= next(
        a for a in state["data_attributes"] if a["custom"]
    ).items()


async def test_ledger_records_api_requests_but_never_the_token(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    await _traffic(fake, client)
    async with httpx.AsyncClient(base_url=fake.url, headers={"Authorization": "Bearer wrong-secret"}) as other:
        await other.get("/me")
    entries = fake.ledger
    assert [(e.method, e.path, e.status) for e in entries] == [
        ("POST", "/contacts", 200),
        ("POST", "/companies", 200),
        ("POST", "/events", 202),
        ("GET", "/me", 401),
    ]
    assert entries[0].body == {"external_id": "u1", "custom_attributes": {"plan": "pro"}}
    assert entries[0].headers["intercom-version"] == "2.16"
    assert "authorization" not in entries[0].headers
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    over_http = (await client.get("/_fake/ledger")).json()
    assert over_http["total"] == 4 and len(over_http["entries"]) == 4
    assert [e["seq"] for e in (await client.get("/_fake/ledger", params={"since": 2})).json()["entries"]] == [
        3,
        4,
    ]
    everything = json.dumps([e.to_json() for e in entries]) + json.dumps(over_http)
    assert fake.token not in everything and "wrong-secret" not in everything
    assert fake.requests("POST", "/co") == entries[:2]


async def test_control_endpoints_skip_auth_limits_and_ledger(clock: FakeClock) -> None:
    async with FakeIntercom(limit_per_window=1, clock=clock) as fake:
        async with httpx.AsyncClient(base_url=fake.url) as anonymous:
            for _ in range(3):
                assert (await anonymous.get("/_fake/health")).status_code == 200
            assert (await anonymous.get("/_fake/nothing")).status_code == 404
        assert len(fake.ledger) == 0
        async with checked_client(fake) as client:
            assert (await client.get("/me")).status_code == 200


async def test_reset_forgets_everything(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    await _traffic(fake, client)
    fake.faults.latency = 1.0
    ledger = fake.ledger
    assert (await client.post("/_fake/reset")).json() == {"status": "ok"}
    assert fake.state.contacts == {} and fake.state.companies == {} and fake.state.events == []
    assert fake.state.custom_attribute("contact", "plan") is None
    assert fake.ledger is ledger and len(ledger) == 0
    assert fake.faults.latency == 0.0
    assert (await client.get("/me")).headers["x-ratelimit-remaining"] == "1665"
    fake.reset()
    assert len(fake.ledger) == 0


async def test_a_bug_in_a_route_answers_500(
    fake: FakeIntercom, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(call: object) -> tuple[int, object]:
        raise RuntimeError("bug")

    monkeypatch.setattr(fake._app.routes.contacts, "me", broken)
    response = await client.get("/me")
    assert response.status_code == 500
    assert response.json()["errors"] == [{"code": "server_error", "message": "Server Error"}]
    assert fake.ledger[-1].status == 500
