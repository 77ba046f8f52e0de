"""Companies over a scripted Intercom: upsert, attach and detach, and the calls a repeat does not make."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from intercom_sidecar.errors import RetryableError
from intercom_sidecar.intercom.sender import IntercomSender, SenderStats
from intercom_sidecar.mapping.company import company_id_for_name
from intercom_sidecar.model.events import Identify
from tests.conftest import FakeClock
from tests.unit.intercom.conftest import SenderFactory
from tests.unit.intercom.scripted import (
    USER_NOT_FOUND,
    FakeIntercom,
    attribute_list,
    company,
    contact,
    error,
    group_plan,
    identify_plan,
    ok,
    plan_for,
)

ACME = {"id": "acme", "name": "Acme", "plan": "pro"}
ACME_BODY = {"company_id": "acme", "name": "Acme", "plan": "pro", "update_last_request_at": True}
COLD_IDENTIFY_WITH_COMPANY = ["POST /contacts", "POST /companies", "POST /contacts/c1/companies"]


def attached(intercom_id: str) -> httpx.Response:
    return company(intercom_id, "acme")


async def warm_up(sender: IntercomSender, intercom: FakeIntercom) -> None:
    """u1 (contact c1) is known, and attached to acme (company co1)."""
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/companies", company("co1", "acme"))
    intercom.on("POST", "/contacts/c1/companies", attached("co1"))
    await sender.send(identify_plan(company=ACME))
    assert intercom.calls == COLD_IDENTIFY_WITH_COMPANY
    intercom.forget_requests()


# --- identify with a company ---


async def test_identify_with_company_is_three_calls_cold_and_none_warm(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    await warm_up(sender, intercom)

    await sender.send(identify_plan(company=ACME))
    await sender.send(identify_plan(company=ACME))

    assert intercom.calls == []
    assert sender.stats == SenderStats(
        unchanged_contacts_skipped=2,
        unchanged_companies_skipped=2,
        attributes_dropped=0,
        contacts_created_for_events=0,
        leads_not_found=0,
    )


async def test_identify_with_company_bodies(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/companies", company("co1", "acme"))
    intercom.on("POST", "/contacts/c1/companies", attached("co1"))

    await sender.send(identify_plan(company=ACME))

    assert intercom.calls == COLD_IDENTIFY_WITH_COMPANY
    assert intercom.bodies("POST", "/contacts") == [
        {"role": "user", "external_id": "u1", "last_seen_at": 1_700_000_000}
    ]
    assert intercom.bodies("POST", "/companies") == [ACME_BODY]
    assert intercom.bodies("POST", "/contacts/c1/companies") == [{"id": "co1"}]


async def test_changed_company_is_upserted_and_its_attachment_not_repeated(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    await warm_up(sender, intercom)
    intercom.on("POST", "/companies", company("co1", "acme"))

    await sender.send(identify_plan(company={**ACME, "plan": "enterprise"}))

    assert intercom.calls == ["POST /companies"]
    assert intercom.bodies("POST", "/companies") == [{**ACME_BODY, "plan": "enterprise"}]


async def test_company_fields_already_written_by_another_source_are_not_rewritten(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    """A group's traits and an identify's company object describe acme with different fields: each write only
    sets the fields it has, so a repeat of either is skipped."""
    await warm_up(sender, intercom)
    intercom.on("POST", "/companies", company("co1", "acme"))

    await sender.send(group_plan("acme", industry="Software"))  # new field: written; already attached
    await sender.send(identify_plan(company=ACME))  # every field already has this value
    await sender.send(group_plan("acme", industry="Software"))

    assert intercom.calls == ["POST /companies"]
    assert intercom.bodies("POST", "/companies") == [
        {"company_id": "acme", "industry": "Software", "update_last_request_at": True}
    ]
    assert sender.stats.unchanged_companies_skipped == 2


async def test_last_request_is_updated_again_once_per_resolution(
    sender: IntercomSender, intercom: FakeIntercom, clock: FakeClock
) -> None:
    await warm_up(sender, intercom)
    intercom.on("POST", "/companies", company("co1", "acme"))

    clock.advance(3599)
    await sender.send(group_plan("acme", name="Acme", plan="pro"))  # same fields, touched 59:59 ago
    clock.advance(1)
    await sender.send(group_plan("acme", name="Acme", plan="pro"))  # an hour: touched again

    assert intercom.calls == ["POST /companies"]
    assert intercom.bodies("POST", "/companies") == [ACME_BODY]


async def test_inactive_identify_does_not_touch_the_company(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/companies", company("co1", "acme"))
    intercom.on("POST", "/contacts/c1/companies", attached("co1"))

    await sender.send(plan_for(Identify(traits={"company": ACME}), context={"active": False}))

    assert intercom.bodies("POST", "/contacts") == [{"role": "user", "external_id": "u1"}]
    assert intercom.bodies("POST", "/companies") == [{"company_id": "acme", "name": "Acme", "plan": "pro"}]


async def test_company_as_a_string_and_a_list_of_companies(sender: IntercomSender, intercom: FakeIntercom) -> None:
    hashed = company_id_for_name("Initech")
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/companies", company("co1", hashed), company("co2", "globex"))
    intercom.on("POST", "/contacts/c1/companies", company("co1", hashed), company("co2", "globex"))

    await sender.send(identify_plan(company="Initech", companies=[{"id": "globex", "name": "Globex"}]))

    assert intercom.calls == [
        "POST /contacts",
        "POST /companies",
        "POST /contacts/c1/companies",
        "POST /companies",
        "POST /contacts/c1/companies",
    ]
    assert intercom.bodies("POST", "/companies") == [
        {"company_id": hashed, "name": "Initech", "update_last_request_at": True},
        {"company_id": "globex", "name": "Globex", "update_last_request_at": True},
    ]
    assert intercom.bodies("POST", "/contacts/c1/companies") == [{"id": "co1"}, {"id": "co2"}]


async def test_company_custom_attributes_are_created_on_the_company_model(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("tier", model="company"))
    intercom.on("POST", "/data_attributes", ok({"type": "data_attribute", "name": "founded", "model": "company"}))
    intercom.on("POST", "/companies", company("co1", "acme"))

    await sender.send(group_plan("acme", None, tier="gold", founded="2001-02-03"))

    assert intercom.calls == ["GET /data_attributes?model=company", "POST /data_attributes", "POST /companies"]
    assert intercom.bodies("POST", "/data_attributes") == [{"name": "founded", "model": "company", "data_type": "date"}]
    assert intercom.bodies("POST", "/companies") == [
        {
            "company_id": "acme",
            "update_last_request_at": True,
            "custom_attributes": {"tier": "gold", "founded": 981_158_400},
        }
    ]


# --- group ---


async def test_group_is_three_calls_cold_and_none_warm(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/companies", company("co1", "acme"))
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/contacts/c1/companies", attached("co1"))
    plan = group_plan("acme", name="Acme", employees=50)

    await sender.send(plan)
    await sender.send(plan)

    assert intercom.calls == ["POST /companies", "POST /contacts", "POST /contacts/c1/companies"]
    assert intercom.bodies("POST", "/companies") == [
        {"company_id": "acme", "name": "Acme", "size": 50, "update_last_request_at": True}
    ]
    assert intercom.bodies("POST", "/contacts") == [{"role": "user", "external_id": "u1"}], "only to learn its id"
    assert intercom.bodies("POST", "/contacts/c1/companies") == [{"id": "co1"}]


async def test_group_for_a_known_user_attaches_without_creating(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    await sender.send(identify_plan())
    intercom.forget_requests()
    intercom.on("POST", "/companies", company("co2", "globex"))
    intercom.on("POST", "/contacts/c1/companies", company("co2", "globex"))

    await sender.send(group_plan("globex", name="Globex"))

    assert intercom.calls == ["POST /companies", "POST /contacts/c1/companies"]


async def test_group_for_a_user_known_by_an_existing_contact(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/companies", company("co1", "acme"))
    intercom.on(
        "POST", "/contacts", error(409, "conflict", "A contact matching those details already exists with id=c9")
    )
    intercom.on("POST", "/contacts/c9/companies", attached("co1"))

    await sender.send(group_plan("acme", name="Acme"))

    assert intercom.calls == ["POST /companies", "POST /contacts", "POST /contacts/c9/companies"]


async def test_group_without_user_id_only_upserts(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/companies", company("co1", "acme"))

    await sender.send(group_plan("acme", None, name="Acme"))

    assert intercom.calls == ["POST /companies"]


async def test_attach_with_a_stale_contact_id_resolves_the_contact_again(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    await warm_up(sender, intercom)  # c1 remembered for u1
    intercom.on("POST", "/companies", company("co2", "globex"))
    intercom.on("POST", "/contacts/c1/companies", error(*USER_NOT_FOUND))  # c1 was deleted in Intercom
    intercom.on("POST", "/contacts", contact("c2"))
    intercom.on("POST", "/contacts/c2/companies", company("co2", "globex"))

    await sender.send(group_plan("globex", name="Globex"))

    assert intercom.calls == [
        "POST /companies",
        "POST /contacts/c1/companies",
        "POST /contacts",
        "POST /contacts/c2/companies",
    ]
    assert intercom.bodies("POST", "/contacts") == [{"role": "user", "external_id": "u1"}]


async def test_a_company_intercom_lost_is_forgotten_and_created_again_on_the_retry(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    await warm_up(sender, intercom)
    intercom.on("POST", "/companies", company("co2", "globex"), company("co3", "globex"))
    intercom.on("POST", "/contacts/c1/companies", error(404, "company_not_found", "Company Not Found"), attached("co3"))
    plan = group_plan("globex", name="Globex")

    with pytest.raises(RetryableError) as caught:
        await sender.send(plan)
    await sender.send(plan)  # what the retry does: the unchanged company is written again, under its new id

    assert caught.value.code == "company_not_found"
    assert intercom.calls == [
        "POST /companies",
        "POST /contacts/c1/companies",
        "POST /companies",
        "POST /contacts/c1/companies",
    ]
    assert intercom.bodies("POST", "/contacts/c1/companies")[-1] == {"id": "co3"}


async def test_failed_attach_is_retryable_and_not_remembered(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/companies", company("co1", "acme"))
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("POST", "/contacts/c1/companies", error(503, "service_unavailable", "try later"), attached("co1"))
    plan = group_plan("acme", name="Acme")

    with pytest.raises(RetryableError):
        await sender.send(plan)
    await sender.send(plan)  # the company upsert is skipped, the attach is sent again

    assert intercom.calls == [
        "POST /companies",
        "POST /contacts",
        "POST /contacts/c1/companies",
        "POST /contacts/c1/companies",
    ]


# --- detach (`remove: true`) ---

REMOVE_ACME = {"id": "acme", "remove": True}


async def test_detach_a_cached_company(sender: IntercomSender, intercom: FakeIntercom) -> None:
    await warm_up(sender, intercom)
    intercom.on("DELETE", "/contacts/c1/companies/co1", attached("co1"))
    intercom.on("POST", "/contacts/c1/companies", attached("co1"))

    await sender.send(identify_plan(company=REMOVE_ACME))
    await sender.send(identify_plan(company=ACME))  # attached again: the attachment was forgotten

    assert intercom.calls == ["DELETE /contacts/c1/companies/co1", "POST /contacts/c1/companies"]
    assert intercom.requests[0].content == b""


@pytest.mark.parametrize(
    "found",
    [
        {"type": "company", "id": "co7", "company_id": "acme"},
        {"type": "list", "data": [{"type": "company", "id": "co7", "company_id": "acme"}]},
    ],
    ids=["company object", "list"],
)
async def test_detach_an_unknown_company_looks_it_up_by_company_id(
    sender: IntercomSender, intercom: FakeIntercom, found: dict[str, Any]
) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("GET", "/companies", ok(found))
    intercom.on("DELETE", "/contacts/c1/companies/co7", company("co7", "acme"))

    await sender.send(identify_plan(company=REMOVE_ACME))

    assert intercom.calls == ["POST /contacts", "GET /companies?company_id=acme", "DELETE /contacts/c1/companies/co7"]


async def test_detach_a_company_intercom_does_not_know_is_nothing_to_do(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("GET", "/companies", error(404, "company_not_found", "Company Not Found"))

    await sender.send(identify_plan(company=REMOVE_ACME))

    assert intercom.calls == ["POST /contacts", "GET /companies?company_id=acme"]


async def test_detach_lookup_answering_another_company_is_nothing_to_do(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("GET", "/companies", ok({"type": "list", "data": [{"type": "company", "id": "x", "company_id": "b"}]}))

    await sender.send(identify_plan(company=REMOVE_ACME))

    assert intercom.calls == ["POST /contacts", "GET /companies?company_id=acme"]


async def test_detach_of_an_attachment_intercom_does_not_have_succeeds(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    await warm_up(sender, intercom)
    intercom.on("DELETE", "/contacts/c1/companies/co1", error(404, "company_not_found", "Company Not Found"))

    await sender.send(identify_plan(company=REMOVE_ACME))

    assert intercom.calls == ["DELETE /contacts/c1/companies/co1"]


async def test_failed_detach_is_retryable(sender: IntercomSender, intercom: FakeIntercom) -> None:
    await warm_up(sender, intercom)
    intercom.on("DELETE", "/contacts/c1/companies/co1", error(500, "server_error", "oops"))

    with pytest.raises(RetryableError) as caught:
        await sender.send(identify_plan(company=REMOVE_ACME))

    assert caught.value.endpoint == "DELETE /contacts/{id}/companies/{company_id}"


async def test_failed_lookup_is_retryable(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", contact("c1"))
    intercom.on("GET", "/companies", error(502, "bad_gateway", "oops"))

    with pytest.raises(RetryableError) as caught:
        await sender.send(identify_plan(company=REMOVE_ACME))

    assert caught.value.endpoint == "GET /companies"


# --- data attributes off ---


async def test_unknown_company_attributes_are_dropped_when_creation_is_off(
    make_sender: SenderFactory, intercom: FakeIntercom
) -> None:
    sender = make_sender(create_attributes=False)
    intercom.on("GET", "/data_attributes", attribute_list("tier", model="company"))
    intercom.on("POST", "/companies", company("co1", "acme"))

    await sender.send(group_plan("acme", None, tier="gold", seats=5, region="eu"))

    assert intercom.calls == ["GET /data_attributes?model=company", "POST /companies"]
    assert intercom.bodies("POST", "/companies") == [
        {"company_id": "acme", "update_last_request_at": True, "custom_attributes": {"tier": "gold"}}
    ]
    assert sender.stats.attributes_dropped == 2
