"""IntercomSender over httpx.MockTransport scripted like Intercom: step order, data attributes, data events
(a track before its identify), lead merges. Contacts and companies have their own files."""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.errors import PermanentError, RetryableError, ThrottledError
from intercom_sidecar.intercom.sender import IntercomSender, SenderStats
from intercom_sidecar.mapping import ContactRef, CreateDataEvent, Plan, UpsertContact
from intercom_sidecar.model.events import Identify, Track
from tests.unit.intercom.conftest import SenderFactory
from tests.unit.intercom.scripted import (
    ALREADY_EXISTS,
    NOW,
    USER_NOT_FOUND,
    FakeIntercom,
    alias_plan,
    attribute,
    attribute_list,
    contact,
    error,
    identify_plan,
    ok,
    plan_for,
    track_plan,
)

ORDER = {"event_name": "Order Completed", "created_at": int(NOW), "user_id": "u1"}


def upsert_plan(values: dict[str, Any], types: dict[str, str], external_id: str = "u1") -> Plan:
    body = {"role": "user", "external_id": external_id, "custom_attributes": values}
    step = UpsertContact(contact=ContactRef(external_id=external_id, email=None), body=body, attribute_types=types)
    return Plan(steps=(step,))


def stats(**counts: int) -> SenderStats:
    zero = {
        "unchanged_contacts_skipped": 0,
        "unchanged_companies_skipped": 0,
        "attributes_dropped": 0,
        "contacts_created_for_events": 0,
        "leads_not_found": 0,
    }
    return SenderStats(**(zero | counts))


async def test_a_new_sender_has_counted_nothing(sender: IntercomSender) -> None:
    assert sender.stats == stats()


async def test_steps_run_in_order(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/events", ok(status=202))
    ref = ContactRef(external_id="u1", email=None)
    plan = Plan(
        steps=(
            UpsertContact(contact=ref, body={"role": "user", "external_id": "u1"}, attribute_types={}),
            CreateDataEvent(contact=ref, body={"event_name": "x", "created_at": 1, "user_id": "u1"}),
        )
    )

    await sender.send(plan)

    assert intercom.calls == ["POST /contacts", "POST /events"]


async def test_a_failed_step_stops_the_plan(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", error(500, "server_error", "oops"))

    with pytest.raises(RetryableError):
        await sender.send(identify_plan(company={"id": "acme"}))

    assert intercom.calls == ["POST /contacts"]


# --- data attributes ---


async def test_attributes_listed_once_and_missing_ones_created_once(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("plan"))
    intercom.on("POST", "/data_attributes", *(ok(attribute(name)) for name in ("seats", "trial_ends", "score")))
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("PUT", "/contacts/c1", contact("c1"), contact("c1"))
    types = {"plan": "string", "seats": "integer", "trial_ends": "date"}

    await sender.send(upsert_plan({"plan": "pro", "seats": 1, "trial_ends": 1}, types))
    await sender.send(upsert_plan({"plan": "pro", "seats": 2, "trial_ends": 1}, types))
    await sender.send(
        upsert_plan({"plan": "pro", "seats": 2, "trial_ends": 1, "score": 0.5}, types | {"score": "float"})
    )

    assert intercom.calls == [
        "GET /data_attributes?model=contact",
        "POST /data_attributes",
        "POST /data_attributes",
        "POST /contacts",
        "PUT /contacts/c1",
        "POST /data_attributes",
        "PUT /contacts/c1",
    ]
    assert intercom.bodies("POST", "/data_attributes") == [
        {"name": "seats", "model": "contact", "data_type": "integer"},
        {"name": "trial_ends", "model": "contact", "data_type": "date"},
        {"name": "score", "model": "contact", "data_type": "float"},
    ]


async def test_identify_traits_create_typed_attributes(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", attribute_list())
    intercom.on("POST", "/data_attributes", *(ok(attribute(name)) for name in ("vip", "ends", "bio", "address_city")))
    intercom.on("POST", "/contacts", contact("c1"))

    await sender.send(
        identify_plan(vip=True, ends="2024-01-01", bio="b" * 300, address={"city": "Paris"}, tags=["a", "b"])
    )

    assert intercom.bodies("POST", "/data_attributes") == [
        {"name": "vip", "model": "contact", "data_type": "boolean"},
        {"name": "ends", "model": "contact", "data_type": "date"},
        {"name": "bio", "model": "contact", "data_type": "string"},
        {"name": "address_city", "model": "contact", "data_type": "string"},
    ]
    assert intercom.bodies("POST", "/contacts")[0]["custom_attributes"] == {
        "vip": True,
        "ends": 1_704_067_200,
        "bio": "b" * 255,
        "address_city": "Paris",
    }


async def test_attribute_created_meanwhile_by_someone_else(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", attribute_list(), attribute_list("plan"))
    intercom.on("POST", "/data_attributes", error(400, "parameter_invalid", "You already have 'plan' in your data"))
    intercom.on("POST", "/contacts", contact("c1"))

    await sender.send(upsert_plan({"plan": "pro"}, {"plan": "string"}))

    assert intercom.calls == [
        "GET /data_attributes?model=contact",
        "POST /data_attributes",
        "GET /data_attributes?model=contact",
        "POST /contacts",
    ]


async def test_traits_named_like_standard_attributes_are_left_out(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("plan"))
    intercom.on("POST", "/contacts", contact("c1"))

    await sender.send(upsert_plan({"plan": "pro", "Email": "x@example.com"}, {"plan": "string", "Email": "string"}))

    assert intercom.calls == ["GET /data_attributes?model=contact", "POST /contacts"], "no attempt to create `Email`"
    assert intercom.bodies("POST", "/contacts")[0]["custom_attributes"] == {"plan": "pro"}
    assert sender.stats == stats(attributes_dropped=1)


async def test_attributes_are_written_with_intercoms_spelling(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("Plan"))
    intercom.on("POST", "/contacts", contact("c1"))

    await sender.send(upsert_plan({"plan": "pro"}, {"plan": "string"}))

    assert intercom.calls == ["GET /data_attributes?model=contact", "POST /contacts"], "`plan` exists as `Plan`"
    assert intercom.bodies("POST", "/contacts")[0]["custom_attributes"] == {"Plan": "pro"}


async def test_attribute_refused_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    name_rule = "Your name for this attribute must only contain alphanumeric characters, currency symbols, and hyphens"
    intercom.on("GET", "/data_attributes", attribute_list(), attribute_list())
    intercom.on("POST", "/data_attributes", error(400, "parameter_invalid", name_rule))

    with pytest.raises(PermanentError) as caught:
        await sender.send(upsert_plan({"bad/name": "x"}, {"bad/name": "string"}))

    assert (caught.value.status, caught.value.endpoint) == (400, "POST /data_attributes")
    assert "POST /contacts" not in intercom.calls


async def test_failed_listing_is_not_cached(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", error(500, "server_error", "oops"), attribute_list("plan"))
    intercom.on("POST", "/contacts", contact("c1"))

    with pytest.raises(RetryableError):
        await sender.send(upsert_plan({"plan": "pro"}, {"plan": "string"}))
    await sender.send(upsert_plan({"plan": "pro"}, {"plan": "string"}))

    assert intercom.calls == [
        "GET /data_attributes?model=contact",
        "GET /data_attributes?model=contact",
        "POST /contacts",
    ]


async def test_unknown_attributes_are_dropped_when_creation_is_off(
    make_sender: SenderFactory, intercom: FakeIntercom
) -> None:
    sender = make_sender(create_attributes=False)
    intercom.on("GET", "/data_attributes", attribute_list("plan"))
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("PUT", "/contacts/c1", contact("c1"))

    await sender.send(identify_plan(plan="pro", seats=3, vip=True))
    await sender.send(identify_plan(plan="team", seats=3, vip=True))

    assert intercom.calls == ["GET /data_attributes?model=contact", "POST /contacts", "PUT /contacts/c1"]
    assert intercom.bodies("POST", "/contacts") == [
        {"role": "user", "external_id": "u1", "last_seen_at": int(NOW), "custom_attributes": {"plan": "pro"}}
    ]
    assert intercom.bodies("PUT", "/contacts/c1")[0]["custom_attributes"] == {"plan": "team"}
    assert sender.stats == stats(attributes_dropped=4)


async def test_event_sent_whole_when_every_attribute_is_dropped(
    make_sender: SenderFactory, intercom: FakeIntercom
) -> None:
    sender = make_sender(create_attributes=False)
    intercom.on("GET", "/data_attributes", attribute_list())
    intercom.on("POST", "/contacts", contact("c1"))

    await sender.send(identify_plan(name="Ada", seats=3))

    assert intercom.bodies("POST", "/contacts") == [
        {"role": "user", "external_id": "u1", "name": "Ada", "last_seen_at": int(NOW)}
    ]
    assert sender.stats == stats(attributes_dropped=1)


# --- data events ---


async def test_track_posts_one_event(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/events", ok(status=202))

    await sender.send(track_plan(revenue=19.99, sku="A-1"))

    assert intercom.calls == ["POST /events"]
    assert intercom.bodies("POST", "/events") == [
        {**ORDER, "metadata": {"price": {"amount": 1999, "currency": "usd"}, "sku": "A-1"}}
    ]


async def test_track_before_its_identify_creates_the_contact_and_resends(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/events", error(*USER_NOT_FOUND), ok(status=202))
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("PUT", "/contacts/c1", contact("c1"))

    await sender.send(track_plan(sku="A-1"))
    await sender.send(identify_plan(name="Ada"))  # the identify that was overtaken: one PUT to the remembered id

    assert intercom.calls == ["POST /events", "POST /contacts", "POST /events", "PUT /contacts/c1"]
    sent = {**ORDER, "metadata": {"sku": "A-1"}}
    assert intercom.bodies("POST", "/events") == [sent, sent], "the same body: Intercom's duplicate check holds"
    assert intercom.bodies("POST", "/contacts") == [{"role": "user", "external_id": "u1"}]
    assert sender.stats == stats(contacts_created_for_events=1)


async def test_track_by_email_before_its_identify(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/events", error(*USER_NOT_FOUND), ok(status=202))
    intercom.on("POST", "/contacts", contact("c1"))

    await sender.send(track_plan(None, email="ada@example.com"))

    assert intercom.calls == ["POST /events", "POST /contacts", "POST /events"]
    assert intercom.bodies("POST", "/contacts") == [{"role": "user", "email": "ada@example.com"}]
    assert intercom.bodies("POST", "/events")[1] == {
        "event_name": "Order Completed",
        "created_at": int(NOW),
        "email": "ada@example.com",
        "metadata": {"email": "ada@example.com"},
    }


async def test_track_404_for_a_contact_that_exists_resends_after_the_409(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/events", error(*USER_NOT_FOUND), ok(status=202))
    intercom.on("POST", "/contacts", error(409, "conflict", ALREADY_EXISTS))

    await sender.send(track_plan())

    assert intercom.calls == ["POST /events", "POST /contacts", "POST /events"], "no update: the event has no traits"


async def test_track_404_forgets_a_remembered_contact(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"), contact("c2"))
    intercom.on("POST", "/events", error(*USER_NOT_FOUND), ok(status=202))
    intercom.on("PUT", "/contacts/c2", contact("c2"))
    await sender.send(identify_plan(name="Ada"))  # c1 remembered, then deleted in Intercom

    await sender.send(track_plan())
    await sender.send(identify_plan(name="Ada"))  # the remembered write was for c1: written to c2

    assert intercom.calls == ["POST /contacts", "POST /events", "POST /contacts", "POST /events", "PUT /contacts/c2"]


async def test_track_404_is_permanent_when_missing_contacts_are_not_created(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/events", error(*USER_NOT_FOUND))
    plan = plan_for(Track(event="Order Completed", properties={}), create_missing_contacts=False)

    with pytest.raises(PermanentError) as caught:
        await sender.send(plan)

    assert caught.value.reason == "intercom 404 not_found: User Not Found (POST /events)"
    assert intercom.calls == ["POST /events"]
    assert sender.stats == stats()


async def test_track_404_again_after_creating_the_contact_is_permanent(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/events", error(*USER_NOT_FOUND), error(*USER_NOT_FOUND))
    intercom.on("POST", "/contacts", contact("c1"))

    with pytest.raises(PermanentError) as caught:
        await sender.send(track_plan())

    assert caught.value.status == 404
    assert intercom.calls == ["POST /events", "POST /contacts", "POST /events"], "created once, sent twice: no loop"


async def test_track_refused_otherwise_is_not_retried_with_a_contact(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/events", error(400, "parameter_invalid", "event_name is too long"))

    with pytest.raises(PermanentError):
        await sender.send(track_plan())

    assert intercom.calls == ["POST /events"]


async def test_throttled_event_carries_the_reset(sender: IntercomSender, intercom: FakeIntercom) -> None:
    headers = {"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 10)}
    intercom.on("POST", "/events", error(429, "rate_limit_exceeded", "Exceeded rate limit", headers))

    with pytest.raises(ThrottledError) as caught:
        await sender.send(track_plan())

    assert caught.value.retry_after == 10.0


# --- leads: alias merges the lead into the user ---

MERGE = {"from": "l1", "into": "c1", "skip_duplicate_validation": True}


def lead_identify(anonymous_id: str = "anon-1", **traits: Any) -> Plan:
    return plan_for(Identify(traits=traits), user_id=None, anonymous_id=anonymous_id, leads=True)


def search_for(anonymous_id: str) -> dict[str, Any]:
    return {"query": {"field": "external_id", "operator": "=", "value": anonymous_id}}


async def test_lead_identify_then_alias_merges_the_remembered_lead(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", contact("l1", role="lead"), contact("c1"))
    intercom.on("POST", "/contacts/merge", contact("c1"))

    await sender.send(lead_identify(name="Visitor"))
    await sender.send(alias_plan("anon-1"))

    assert intercom.calls == ["POST /contacts", "POST /contacts", "POST /contacts/merge"]
    assert intercom.bodies("POST", "/contacts") == [
        {"role": "lead", "external_id": "anon-1", "name": "Visitor", "last_seen_at": int(NOW)},
        {"role": "user", "external_id": "u1"},
    ]
    assert intercom.bodies("POST", "/contacts/merge") == [MERGE]


async def test_alias_finds_an_unknown_lead_by_search(sender: IntercomSender, intercom: FakeIntercom) -> None:
    found = {"type": "list", "total_count": 1, "data": [{"type": "contact", "id": "l1", "role": "lead"}]}
    intercom.on("POST", "/contacts/search", ok(found))
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/contacts/merge", contact("c1"))

    await sender.send(alias_plan("anon-1"))

    assert intercom.calls == ["POST /contacts/search", "POST /contacts", "POST /contacts/merge"]
    assert intercom.bodies("POST", "/contacts/search") == [search_for("anon-1")]
    assert intercom.bodies("POST", "/contacts/merge") == [MERGE]


async def test_alias_into_a_remembered_user(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("l1", role="lead"), contact("c1"))
    intercom.on("POST", "/contacts/merge", contact("c1"))
    await sender.send(lead_identify())
    await sender.send(identify_plan())
    intercom.forget_requests()

    await sender.send(alias_plan("anon-1"))

    assert intercom.calls == ["POST /contacts/merge"]
    assert intercom.bodies("POST", "/contacts/merge") == [MERGE]


@pytest.mark.parametrize(
    "data",
    [[], [{"type": "contact", "id": "u9", "role": "user"}]],
    ids=["no match", "only a user matches"],
)
async def test_alias_for_a_lead_not_found_is_retried_later(
    sender: IntercomSender, intercom: FakeIntercom, data: list[dict[str, Any]]
) -> None:
    """The lead's identify may still be on its way (another user key, another queue): never ack a merge that
    did not happen."""
    intercom.on("POST", "/contacts/search", ok({"type": "list", "total_count": len(data), "data": data}))

    with pytest.raises(RetryableError) as raised:
        await sender.send(alias_plan("anon-1"))

    assert raised.value.code == "lead_not_found"
    assert intercom.calls == ["POST /contacts/search"]
    assert sender.stats == stats(leads_not_found=1)


async def test_merged_lead_is_forgotten(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("l1", role="lead"), contact("c1"))
    intercom.on("POST", "/contacts/merge", contact("c1"))
    intercom.on("POST", "/contacts/search", ok({"type": "list", "total_count": 0, "data": []}))

    await sender.send(lead_identify())
    await sender.send(alias_plan("anon-1"))
    with pytest.raises(RetryableError):  # a repeat: the lead is gone, so Intercom is asked
        await sender.send(alias_plan("anon-1"))

    assert intercom.calls == ["POST /contacts", "POST /contacts", "POST /contacts/merge", "POST /contacts/search"]
    assert sender.stats == stats(leads_not_found=1)


async def test_failed_merge_is_classified(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("l1", role="lead"), contact("c1"))
    intercom.on("POST", "/contacts/merge", error(503, "service_unavailable", "try later"), contact("c1"))
    await sender.send(lead_identify())

    with pytest.raises(RetryableError) as caught:
        await sender.send(alias_plan("anon-1"))
    await sender.send(alias_plan("anon-1"))  # the lead is still remembered: merged on the retry

    assert caught.value.endpoint == "POST /contacts/merge"
    assert intercom.calls == ["POST /contacts", "POST /contacts", "POST /contacts/merge", "POST /contacts/merge"]
