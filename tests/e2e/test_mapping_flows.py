"""Every Segment call type through the real sidecar into the fake Intercom, checked in the fake's state.

The `fake_intercom` fixture also validates every request the sidecar sent against Intercom's OpenAPI schemas.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import MappingConfig, Secret
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, SidecarFactory

pytestmark = pytest.mark.e2e

Ack = event_pb2.Ack
DELIVERED_MODE = (("x-ack-mode", "delivered"),)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def event(message_id: str, user_id: str = "", anonymous_id: str = "", **call: Any) -> event_pb2.Event:
    return event_pb2.Event(message_id=message_id, user_id=user_id, anonymous_id=anonymous_id, **call)


async def deliver(sidecar: Sidecar, *events: event_pb2.Event) -> list[event_pb2.Ack]:
    """Send in delivered mode, one at a time (so they reach Intercom in order); every ack must be DELIVERED."""
    acks = []
    for message in events:
        response = await sidecar.stub.Send(
            service_pb2.SendRequest(events=[message]), metadata=DELIVERED_MODE, timeout=30
        )
        acks.extend(response.acks)
    assert [(ack.message_id, ack.status, ack.reason) for ack in acks] == [
        (message.message_id, Ack.STATUS_DELIVERED, "") for message in events
    ]
    return acks


async def test_identify_with_companies_then_group(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    company = {"id": "acme", "name": "Acme", "plan": "enterprise", "employees": 120, "tier": "gold"}
    traits = {"email": "ada@example.com", "company": company, "companies": ["Initech"]}
    group = event_pb2.Group(group_id="globex", traits=struct({"name": "Globex", "monthly_spend": 99.5}))
    await deliver(
        sidecar,
        event("m1", "u1", identify=event_pb2.Identify(traits=struct(traits))),
        event("m2", "u1", group=group),
    )

    contact = fake_intercom.state.contact_by_external_id("u1")
    assert contact is not None
    acme = fake_intercom.state.company_by_company_id("acme")
    globex = fake_intercom.state.company_by_company_id("globex")
    assert acme is not None and globex is not None
    assert (acme.name, acme.plan, acme.size, acme.custom_attributes) == ("Acme", "enterprise", 120, {"tier": "gold"})
    assert (globex.name, globex.monthly_spend) == ("Globex", 99)
    initech = [c for c in fake_intercom.state.companies.values() if c.name == "Initech"]
    assert len(initech) == 1
    assert set(contact.company_ids) == {acme.id, globex.id, initech[0].id}


async def test_company_remove_detaches_in_one_call_when_known(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    joined = {"company": {"id": "acme", "name": "Acme"}}
    left = {"company": {"id": "acme", "remove": True}}
    await deliver(sidecar, event("m1", "u1", identify=event_pb2.Identify(traits=struct(joined))))
    before = len(fake_intercom.ledger)
    await deliver(sidecar, event("m2", "u1", identify=event_pb2.Identify(traits=struct(left))))

    contact = fake_intercom.state.contact_by_external_id("u1")
    assert contact is not None and contact.company_ids == []
    calls = [(entry.method, entry.path) for entry in fake_intercom.ledger[before:]]
    acme = fake_intercom.state.company_by_company_id("acme")
    assert acme is not None
    assert calls == [("DELETE", f"/contacts/{contact.id}/companies/{acme.id}")], (
        "the unchanged contact is not rewritten"
    )


async def test_repeated_identical_identify_costs_no_call(sidecar: Sidecar, fake_intercom: FakeIntercom) -> None:
    identify = event_pb2.Identify(traits=struct({"email": "ada@example.com", "plan": "pro"}))
    await deliver(sidecar, event("m1", "u1", identify=identify))
    before = len(fake_intercom.ledger)
    await deliver(sidecar, event("m2", "u1", identify=identify), event("m3", "u1", identify=identify))
    assert fake_intercom.ledger[before:] == []


async def test_leads_are_merged_into_the_user_on_alias(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    sidecar = await start_sidecar(mapping=MappingConfig(leads=True))
    anonymous = event("m1", anonymous_id="anon-1", identify=event_pb2.Identify(traits=struct({"name": "Visitor"})))
    user = event("m2", "u1", identify=event_pb2.Identify(traits=struct({"email": "ada@example.com"})))
    alias = event("m3", "u1", alias=event_pb2.Alias(previous_id="anon-1"))
    await deliver(sidecar, anonymous, user, alias)

    lead = fake_intercom.state.contact_by_external_id("anon-1")
    merged = [entry for entry in fake_intercom.ledger if entry.path == "/contacts/merge"]
    assert [entry.status for entry in merged] == [200]
    assert lead is None or lead.merged_into is not None


async def test_alias_is_filtered_when_leads_are_off(sidecar: Sidecar) -> None:
    response = await sidecar.stub.Send(
        service_pb2.SendRequest(events=[event("m1", "u1", alias=event_pb2.Alias(previous_id="anon-1"))]), timeout=30
    )
    assert (response.acks[0].status, response.acks[0].reason) == (
        Ack.STATUS_FILTERED,
        "alias: not sent (leads are disabled, so there is no lead to merge)",
    )


async def test_page_as_event(start_sidecar: SidecarFactory, fake_intercom: FakeIntercom) -> None:
    sidecar = await start_sidecar(mapping=MappingConfig(page_mode="event"))
    page = event_pb2.Page(name="Pricing", properties=struct({"path": "/pricing"}))
    await deliver(sidecar, event("m1", "u1", page=page))
    assert [(e.event_name, e.metadata) for e in fake_intercom.state.events] == [
        ("Viewed Pricing Page", {"path": "/pricing"})
    ]


async def test_identity_verification(start_sidecar: SidecarFactory, fake_intercom: FakeIntercom) -> None:
    secret = "messenger-secret"
    sidecar = await start_sidecar(mapping=MappingConfig(identity_secret=Secret(secret)))
    right = hmac.new(secret.encode(), b"u1", hashlib.sha256).hexdigest()

    reply = await sidecar.stub.UserHash(service_pb2.UserHashRequest(user_id="u1"), timeout=10)
    assert reply.user_hash == right

    def signed(message_id: str, user_hash: str) -> event_pb2.Event:
        message = event(message_id, "u1", track=event_pb2.Track(event="Signed In"))
        message.integrations.update({"All": False, "Intercom": {"user_hash": user_hash}})
        return message

    response = await sidecar.stub.Send(
        service_pb2.SendRequest(events=[signed("good", right), signed("bad", "0" * 64)]), timeout=30
    )
    assert [(ack.status, ack.reason) for ack in response.acks] == [
        (Ack.STATUS_ACCEPTED, ""),
        (Ack.STATUS_INVALID, "integrations.Intercom.user_hash: does not match userId"),
    ]
    assert secret not in str(sidecar.app.config)


async def test_user_hash_without_a_secret_is_a_precondition_failure(sidecar: Sidecar) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await sidecar.stub.UserHash(service_pb2.UserHashRequest(user_id="u1"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
