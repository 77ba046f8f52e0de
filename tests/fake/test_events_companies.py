"""Data events and companies, over HTTP."""

from __future__ import annotations

import httpx

from intercom_sidecar.fake import FakeIntercom
from tests.fake.conftest import INVALID_REQUEST, FakeClock


async def _contact(client: httpx.AsyncClient, **body: object) -> str:
    response = await client.post("/contacts", json=body)
    assert response.status_code == 200, response.text
    contact_id: str = response.json()["id"]
    return contact_id


async def test_event_is_accepted_with_an_empty_body(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    contact_id = await _contact(client, external_id="u1", email="ada@example.com")
    body = {
        "event_name": "ordered",
        "created_at": 1_699_999_000,
        "user_id": "u1",
        "metadata": {"sku": "A1", "n": 2},
    }
    response = await client.post("/events", json=body)
    assert response.status_code == 202
    assert response.content == b""
    [event] = fake.state.events
    assert (event.event_name, event.created_at, event.contact_id) == ("ordered", 1_699_999_000, contact_id)
    assert event.metadata == {"sku": "A1", "n": 2}
    for when, other in enumerate(({"id": contact_id}, {"email": "ada@example.com"})):
        response = await client.post("/events", json={"event_name": "seen", "created_at": when, **other})
        assert response.status_code == 202
    assert [e.contact_id for e in fake.state.events_for(contact_id)] == [contact_id] * 3


async def test_event_for_an_unknown_user_is_404(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    response = await client.post("/events", json={"event_name": "x", "created_at": 1, "user_id": "ghost"})
    assert response.status_code == 404
    assert response.json()["errors"] == [{"code": "not_found", "message": "User Not Found"}]
    assert fake.state.events == []


async def test_duplicate_events_are_accepted_once(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    await _contact(client, external_id="u1")
    body = {"event_name": "x", "created_at": 10, "user_id": "u1"}
    assert [(await client.post("/events", json=body)).status_code for _ in range(2)] == [202, 202]
    assert len(fake.state.events) == 1


async def test_event_metadata_keeps_ten_keys_and_needs_fields(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    await _contact(client, external_id="u1")
    metadata = {f"k{i:02}": str(i) for i in range(12)}
    await client.post("/events", json={"event_name": "x", "created_at": 1, "user_id": "u1", "metadata": metadata})
    assert list(fake.state.events[0].metadata) == [f"k{i:02}" for i in range(10)]
    response = await client.post("/events", json={"event_name": "x", "user_id": "u1"}, extensions=INVALID_REQUEST)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "parameter_not_found"


async def test_company_upsert_is_keyed_on_company_id(
    fake: FakeIntercom, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    body = {"company_id": "c1", "name": "Acme", "plan": "pro", "size": 10, "monthly_spend": 99.9}
    first = await client.post("/companies", json=body, extensions=INVALID_REQUEST)  # a float spend, truncated
    assert first.status_code == 200
    created = first.json()
    assert (created["company_id"], created["name"], created["monthly_spend"]) == ("c1", "Acme", 99)
    assert created["plan"]["name"] == "pro"
    clock.advance(1)
    second = await client.post("/companies", json={"company_id": "c1", "industry": "rockets"})
    assert second.json()["id"] == created["id"]
    assert second.json()["industry"] == "rockets" and second.json()["name"] == "Acme"
    assert second.json()["updated_at"] == created["updated_at"] + 1
    assert len(fake.state.companies) == 1
    company = fake.state.company_by_company_id("c1")
    assert company is not None and company.size == 10

    found = await client.get("/companies", params={"company_id": "c1"})
    assert found.status_code == 200
    assert [c["id"] for c in found.json()["data"]] == [created["id"]]
    missing = await client.get("/companies", params={"company_id": "nope"})
    assert missing.status_code == 404
    assert missing.json()["errors"] == [{"code": "company_not_found", "message": "Company Not Found"}]
    assert (await client.get(f"/companies/{created['id']}")).json()["company_id"] == "c1"


async def test_attach_and_detach_a_company(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    contact_id = await _contact(client, external_id="u1")
    company_id = (await client.post("/companies", json={"company_id": "c1", "name": "Acme"})).json()["id"]

    attached = await client.post(f"/contacts/{contact_id}/companies", json={"id": company_id})
    assert attached.status_code == 200
    assert attached.json()["id"] == company_id and attached.json()["user_count"] == 1
    contact = (await client.get(f"/contacts/{contact_id}")).json()
    assert [c["id"] for c in contact["companies"]["data"]] == [company_id]
    listed = await client.get(f"/contacts/{contact_id}/companies")
    assert [c["id"] for c in listed.json()["companies"]] == [company_id]

    detached = await client.delete(f"/contacts/{contact_id}/companies/{company_id}")
    assert detached.status_code == 200 and detached.json()["user_count"] == 0
    stored = fake.state.contact(contact_id)
    assert stored is not None and stored.company_ids == []
    again = await client.delete(f"/contacts/{contact_id}/companies/{company_id}")
    assert again.status_code == 404 and again.json()["errors"][0]["code"] == "company_not_found"


async def test_attach_errors(client: httpx.AsyncClient) -> None:
    contact_id = await _contact(client, external_id="u1")
    unknown_company = await client.post(f"/contacts/{contact_id}/companies", json={"id": "f" * 24})
    assert unknown_company.status_code == 404
    assert unknown_company.json()["errors"][0]["code"] == "company_not_found"
    unknown_contact = await client.post(f"/contacts/{'0' * 24}/companies", json={"id": "f" * 24})
    assert unknown_contact.status_code == 404
    assert unknown_contact.json()["errors"][0] == {"code": "not_found", "message": "User Not Found"}
    no_company = await client.post(f"/contacts/{contact_id}/companies", json={}, extensions=INVALID_REQUEST)
    assert no_company.status_code == 400
    assert no_company.json()["errors"][0] == {
        "code": "parameter_not_found",
        "message": "company not specified",
    }
