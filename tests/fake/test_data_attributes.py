"""Data attributes, and the rule that only created custom attributes can be written."""

from __future__ import annotations

import httpx
import pytest

from intercom_sidecar.fake import FakeIntercom
from tests.fake.conftest import INVALID_REQUEST


def _error(response: httpx.Response) -> tuple[str, str]:
    [error] = response.json()["errors"]
    return error["code"], error["message"]


async def test_list_has_standard_attributes_and_filters_by_model(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/data_attributes")).json()
    assert everything["type"] == "list"
    assert {a["model"] for a in everything["data"]} == {"contact", "company"}
    contact = (await client.get("/data_attributes", params={"model": "contact"})).json()["data"]
    assert {a["model"] for a in contact} == {"contact"}
    assert {"email", "external_id", "name"} <= {a["name"] for a in contact}
    assert not any(a["custom"] for a in contact)
    conversation = await client.get("/data_attributes", params={"model": "conversation"})
    assert conversation.status_code == 422


async def test_create_then_list(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    response = await client.post("/data_attributes", json={"name": "plan", "model": "contact", "data_type": "string"})
    assert response.status_code == 200
    created = response.json()
    assert (created["full_name"], created["custom"], created["data_type"]) == (
        "custom_attributes.plan",
        True,
        "string",
    )
    listed = (await client.get("/data_attributes", params={"model": "contact"})).json()["data"]
    assert created in listed
    assert fake.state.custom_attribute("contact", "plan") is not None
    when = await client.post("/data_attributes", json={"name": "renewal", "model": "company", "data_type": "datetime"})
    assert when.json()["data_type"] == "date"


async def test_duplicates_and_invalid_definitions_are_400(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.add_data_attribute("The One Ring", "company")
    same = await client.post(
        "/data_attributes", json={"name": "The One Ring", "model": "company", "data_type": "string"}
    )
    assert same.status_code == 400
    assert _error(same) == (
        "parameter_invalid",
        "You already have 'The One Ring' in your company data. To save this as new company data, use a different name.",
    )
    other_model = await client.post(
        "/data_attributes", json={"name": "The One Ring", "model": "contact", "data_type": "integer"}
    )
    assert _error(other_model)[1].startswith(
        "You already have 'The One Ring' in your company data. To save this as new people"
    )
    standard = await client.post("/data_attributes", json={"name": "name", "model": "contact", "data_type": "string"})
    assert _error(standard)[1].startswith("'Name' is one of our standard attributes for your people data.")
    bad_name = await client.post(
        "/data_attributes", json={"name": "!nv@l!d n@me", "model": "company", "data_type": "string"}
    )
    assert _error(bad_name)[1].startswith("Your name for this attribute must only contain alphanumeric characters")
    bad_type = await client.post(
        "/data_attributes",
        json={"name": "x", "model": "company", "data_type": "mithril"},
        extensions=INVALID_REQUEST,
    )
    assert _error(bad_type) == ("parameter_invalid", "Data Type isn't an option")
    one_option = {"name": "tier", "model": "contact", "data_type": "options", "options": [{"value": "gold"}]}
    assert (await client.post("/data_attributes", json=one_option)).status_code == 400


async def test_writes_to_unknown_custom_attributes_are_rejected(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    response = await client.post("/contacts", json={"external_id": "u1", "custom_attributes": {"plan": "pro"}})
    assert response.status_code == 400
    assert _error(response) == ("parameter_invalid", "Custom attribute 'plan' does not exist")
    assert fake.state.contacts == {}
    company = await client.post("/companies", json={"company_id": "c1", "custom_attributes": {"tier": "gold"}})
    assert _error(company) == ("parameter_invalid", "Custom attribute 'tier' does not exist")
    # An attribute created for companies does not make it writable on contacts.
    fake.add_data_attribute("tier", "company")
    response = await client.post("/contacts", json={"external_id": "u1", "custom_attributes": {"tier": "gold"}})
    assert response.status_code == 400
    assert (
        await client.post("/companies", json={"company_id": "c1", "custom_attributes": {"tier": "gold"}})
    ).status_code == 200


async def test_created_attributes_accept_values_of_their_type(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    fake.add_data_attribute("seats", "contact", "integer")
    fake.add_data_attribute("paid", "contact", "boolean")
    fake.add_data_attribute("renews_at", "contact", "date")
    fake.add_data_attribute("tier", "contact", "options", options=["gold", "silver"])
    good = {"seats": 3, "paid": True, "renews_at": 1_700_000_000, "tier": "gold"}
    response = await client.post("/contacts", json={"external_id": "u1", "custom_attributes": good})
    assert response.status_code == 200 and response.json()["custom_attributes"] == good
    contact_id = response.json()["id"]
    for wrong in (
        {"seats": "3"},
        {"paid": "yes"},
        {"renews_at": "tomorrow"},
        {"tier": "bronze"},
        {"seats": 1.5},
    ):
        response = await client.put(f"/contacts/{contact_id}", json={"custom_attributes": wrong})
        assert response.status_code == 400, wrong
        assert _error(response)[0] == "parameter_invalid"
        assert f"'{next(iter(wrong))}'" in _error(response)[1]


def test_add_data_attribute_helper_validates(fake: FakeIntercom) -> None:
    fake.add_data_attribute("plan")
    with pytest.raises(ValueError, match="already exists"):
        fake.add_data_attribute("plan")
    with pytest.raises(ValueError):
        fake.add_data_attribute("x", "conversation")
    with pytest.raises(ValueError):
        fake.add_data_attribute("x", "contact", "mithril")
