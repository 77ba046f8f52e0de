"""Contacts: create, conflicts, update, get, search and merge, over HTTP."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from intercom_sidecar.fake import FakeIntercom
from tests.fake.conftest import INVALID_REQUEST, FakeClock


async def _create(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await client.post("/contacts", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, object] = response.json()
    return created


def _error(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    assert body["type"] == "error.list"
    assert body["request_id"] == response.headers["x-request-id"]
    [error] = body["errors"]
    return error["code"], error["message"]


async def test_create_defaults_to_user_and_is_stored(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    body = await _create(client, external_id="u1", email="Ada@Example.com", name="Ada", signed_up_at=1_600_000_000)
    assert body["type"] == "contact"
    assert body["role"] == "user"
    assert body["external_id"] == "u1"
    assert body["email"] == "Ada@Example.com"
    assert body["email_domain"] == "Example.com"
    assert body["created_at"] == body["updated_at"] == 1_700_000_000
    stored = fake.state.contact_by_external_id("u1")
    assert stored is not None and stored.id == body["id"] and stored.name == "Ada"
    assert fake.state.contact_by_email("ada@example.com") is stored


async def test_create_conflict_names_the_existing_contact(client: httpx.AsyncClient) -> None:
    first = await _create(client, external_id="u1", email="a@example.com")
    for body in ({"external_id": "u1"}, {"email": "A@example.com", "external_id": "u2"}):
        response = await client.post("/contacts", json=body)
        assert response.status_code == 409
        assert _error(response) == (
            "conflict",
            f"A contact matching those details already exists with id={first['id']}",
        )


async def test_leads_may_share_an_email_with_a_user(client: httpx.AsyncClient) -> None:
    user = await _create(client, email="a@example.com")
    lead = await _create(client, role="lead", email="a@example.com")
    assert lead["role"] == "lead" and lead["id"] != user["id"]


async def test_create_rejects_bad_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/contacts", json={"external_id": "u1", "nickname": "x"}, extensions=INVALID_REQUEST)
    assert response.status_code == 400
    assert _error(response) == ("bad_request", "bad 'nickname' parameter")
    response = await client.post("/contacts", json={"external_id": 5}, extensions=INVALID_REQUEST)
    assert response.status_code == 400
    assert _error(response)[0] == "parameter_invalid"
    response = await client.post("/contacts", json={"role": "admin"})
    assert response.status_code == 400
    response = await client.post("/contacts", content=b"{not json", extensions=INVALID_REQUEST)
    assert response.status_code == 400
    assert _error(response) == ("parameter_invalid", "Request body is not valid JSON")


async def test_update_get_and_not_found(fake: FakeIntercom, client: httpx.AsyncClient, clock: FakeClock) -> None:
    created = await _create(client, external_id="u1")
    clock.advance(5)
    response = await client.put(
        f"/contacts/{created['id']}", json={"name": "Ada", "phone": "+441234", "email": "a@x.io"}
    )
    assert response.status_code == 200
    updated = response.json()
    assert (updated["name"], updated["phone"], updated["email"]) == ("Ada", "+441234", "a@x.io")
    assert updated["updated_at"] == created["updated_at"] + 5  # type: ignore[operator]
    fetched = await client.get(f"/contacts/{created['id']}")
    assert fetched.status_code == 200 and fetched.json() == updated
    assert fake.state.contact_by_email("a@x.io") is fake.state.contact_by_external_id("u1")

    for response in (
        await client.get("/contacts/0123456789abcdef01234567"),
        await client.put("/contacts/0123456789abcdef01234567", json={"name": "x"}),
    ):
        assert response.status_code == 404
        assert _error(response) == ("not_found", "User Not Found")


async def test_update_to_an_identity_in_use_conflicts(client: httpx.AsyncClient) -> None:
    first = await _create(client, external_id="u1", email="one@example.com")
    second = await _create(client, external_id="u2")
    response = await client.put(f"/contacts/{second['id']}", json={"external_id": "u1"})
    assert response.status_code == 409
    assert _error(response)[1] == f"A contact matching those details already exists with id={first['id']}"
    response = await client.put(f"/contacts/{second['id']}", json={"email": "one@example.com"})
    assert response.status_code == 409
    # Updating a contact with its own identity is fine.
    response = await client.put(f"/contacts/{first['id']}", json={"external_id": "u1", "email": "one@example.com"})
    assert response.status_code == 200


async def test_search_by_external_id_email_and_groups(client: httpx.AsyncClient) -> None:
    ada = await _create(client, external_id="u1", email="ada@example.com")
    bob = await _create(client, external_id="u2", email="bob@example.com")
    await _create(client, role="lead", email="lead@example.com")

    async def ids(query: Mapping[str, object], **extra: object) -> list[object]:
        response = await client.post("/contacts/search", json={"query": query, **extra})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["type"] == "list" and body["total_count"] >= len(body["data"])
        return [c["id"] for c in body["data"]]

    assert await ids({"field": "external_id", "operator": "=", "value": "u1"}) == [ada["id"]]
    assert await ids({"field": "email", "operator": "=", "value": "BOB@example.com"}) == [bob["id"]]
    assert await ids({"field": "external_id", "operator": "=", "value": "nobody"}) == []
    either = {
        "operator": "OR",
        "value": [
            {"field": "external_id", "operator": "=", "value": "u1"},
            {"field": "email", "operator": "=", "value": "bob@example.com"},
        ],
    }
    assert await ids(either) == [ada["id"], bob["id"]]
    both = {
        "operator": "AND",
        "value": [
            {"field": "role", "operator": "=", "value": "user"},
            {"field": "email", "operator": "$", "value": "@example.com"},
        ],
    }
    assert await ids(both) == [ada["id"], bob["id"]]
    assert await ids({"field": "external_id", "operator": "IN", "value": ["u2", "u9"]}) == [bob["id"]]
    page = await client.post(
        "/contacts/search",
        json={"query": {"field": "role", "operator": "=", "value": "user"}, "pagination": {"per_page": 1}},
    )
    assert page.json()["pages"]["next"] == {"per_page": 1, "starting_after": ada["id"]}
    rest = {"per_page": 1, "starting_after": ada["id"]}
    assert await ids({"field": "role", "operator": "=", "value": "user"}, pagination=rest) == [bob["id"]]


async def test_search_dates_match_by_day(client: httpx.AsyncClient) -> None:
    created = await _create(client, external_id="u1")  # created at 1_700_000_000, 2023-11-14 22:13:20 UTC
    day = 1_700_000_000 // 86_400 * 86_400
    for operator, value, found in (("=", day + 5, True), (">", day, False), ("<", day + 86_400, True)):
        body = {"query": {"field": "created_at", "operator": operator, "value": value}}
        response = await client.post("/contacts/search", json=body)
        assert [c["id"] for c in response.json()["data"]] == ([created["id"]] if found else [])
    response = await client.post(
        "/contacts/search", json={"query": {"field": "created_at", "operator": ">=", "value": day}}
    )
    assert response.status_code == 400


async def test_merge_lead_into_user(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.add_data_attribute("plan", "contact", "string")
    user = await _create(client, external_id="u1", email="ada@example.com")
    lead = await _create(client, role="lead", email="ada@example.com", name="Ada", custom_attributes={"plan": "pro"})
    await client.post("/events", json={"event_name": "viewed", "created_at": 1, "id": lead["id"]})

    response = await client.post("/contacts/merge", json={"from": lead["id"], "into": user["id"]})
    assert response.status_code == 200
    merged = response.json()
    assert merged["id"] == user["id"] and merged["name"] == "Ada"
    assert merged["custom_attributes"] == {"plan": "pro"}
    assert [e.contact_id for e in fake.state.events] == [user["id"]]

    gone = await client.get(f"/contacts/{lead['id']}")
    assert gone.status_code == 410
    assert gone.headers["link"] == f'</contacts/{user["id"]}>; rel="canonical"'
    assert _error(gone)[0] == "contact_merged"
    assert (await client.put(f"/contacts/{lead['id']}", json={"name": "x"})).status_code == 404
    search = await client.post(
        "/contacts/search", json={"query": {"field": "email", "operator": "=", "value": "ada@example.com"}}
    )
    assert [c["id"] for c in search.json()["data"]] == [user["id"]]
    history = await client.get(f"/contacts/{user['id']}", params={"include_merge_history": "true"})
    [item] = history.json()["merge_history"]
    assert item["source_contact_id"] == lead["id"] and item["source_contact_role"] == "lead"


async def test_merge_rules(client: httpx.AsyncClient) -> None:
    user = await _create(client, external_id="u1", email="ada@example.com")
    other = await _create(client, role="lead", email="someone@example.com")
    response = await client.post("/contacts/merge", json={"from": other["id"], "into": user["id"]})
    assert response.status_code == 400 and _error(response)[0] == "invalid_merge"
    response = await client.post("/contacts/merge", json={"from": user["id"], "into": other["id"]})
    assert response.status_code == 400 and _error(response)[0] == "invalid_merge"
    response = await client.post("/contacts/merge", json={"from": "0" * 24, "into": user["id"]})
    assert response.status_code == 404
    body = {"from": other["id"], "into": user["id"], "skip_duplicate_validation": True}
    assert (await client.post("/contacts/merge", json=body)).status_code == 200


async def test_list_contacts_pages(client: httpx.AsyncClient) -> None:
    ids = [(await _create(client, external_id=f"u{i}"))["id"] for i in range(3)]
    first = (await client.get("/contacts", params={"per_page": 2})).json()
    assert [c["id"] for c in first["data"]] == ids[:2] and first["total_count"] == 3
    cursor = first["pages"]["next"]["starting_after"]
    rest = (await client.get("/contacts", params={"per_page": 2, "starting_after": cursor})).json()
    assert [c["id"] for c in rest["data"]] == ids[2:]
    assert "next" not in rest["pages"]


async def test_search_rejects_what_intercom_rejects(client: httpx.AsyncClient) -> None:
    unknown_field = {"field": "shoe_size", "operator": "=", "value": "9"}
    unknown_attribute = {"field": "custom_attributes.plan", "operator": "=", "value": "pro"}
    too_deep = {
        "operator": "AND",
        "value": [{"operator": "OR", "value": [{"operator": "AND", "value": [unknown_field]}]}],
    }
    for query in (unknown_field, unknown_attribute):
        response = await client.post("/contacts/search", json={"query": query})
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "parameter_invalid"
    response = await client.post("/contacts/search", json={"query": too_deep}, extensions=INVALID_REQUEST)
    assert response.status_code == 400
