"""group -> UpsertCompany (+ AttachCompany for the user): a table of (id, event, expected Plan or Skip)."""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.mapping import AttachCompany, ContactRef, Plan, Skip, UpsertCompany, map_event
from intercom_sidecar.model.events import Event, Group, JsonObject

JAN_2020 = 1_577_836_800
U1 = ContactRef(external_id="u1", email=None)


def group(
    traits: JsonObject | None = None,
    *,
    group_id: str = "acme",
    user_id: str | None = "u1",
    context: JsonObject | None = None,
    integrations: JsonObject | None = None,
) -> Event:
    return Event(
        message_id="m1",
        user_id=user_id,
        anonymous_id=None if user_id is not None else "anon-1",
        timestamp=1_700_000_000.0,
        call=Group(group_id=group_id, traits=traits or {}),
        context=context or {},
        integrations=integrations or {},
    )


def upsert(
    company_id: str = "acme", *, types: dict[str, str] | None = None, touched: bool = True, **fields: Any
) -> UpsertCompany:
    body = {"company_id": company_id, **fields, **({"update_last_request_at": True} if touched else {})}
    return UpsertCompany(company_id=company_id, body=body, attribute_types=types or {})


def attached(step: UpsertCompany, contact: ContactRef = U1) -> Plan:
    return Plan(steps=(step, AttachCompany(contact=contact, company_id=step.company_id)))


def alone(step: UpsertCompany) -> Plan:
    return Plan(steps=(step,))


CASES: list[tuple[str, Event, Plan | Skip]] = [
    ("group_id -> company_id, then attach the user", group(), attached(upsert())),
    ("group_id stripped", group(group_id=" acme "), attached(upsert())),
    ("no user_id: upsert only", group({"name": "Acme"}, user_id=None), alone(upsert(name="Acme"))),
    (
        "the company's email never picks the contact",
        group({"email": "billing@acme.example"}, user_id=None),
        alone(upsert(types={"email": "string"}, custom_attributes={"email": "billing@acme.example"})),
    ),
    (
        "standard traits",
        group(
            {
                "name": "Acme",
                "plan": "enterprise",
                "industry": "Software",
                "website": "https://acme.example",
                "employees": 329,
                "monthly_spend": 1234.56,
                "createdAt": "2020-01-01T00:00:00Z",
            }
        ),
        attached(
            upsert(
                name="Acme",
                plan="enterprise",
                industry="Software",
                website="https://acme.example",
                size=329,
                monthly_spend=1234,
                remote_created_at=JAN_2020,
            )
        ),
    ),
    ("employees as Segment's string", group({"employees": "329"}), attached(upsert(size=329))),
    (
        "other traits -> company custom attributes, with data types",
        group(
            {"tier": "gold", "seats": 5, "mrr": 99.5, "trial": False, "renews": "2020-01-01", "hq": {"city": "Paris"}}
        ),
        attached(
            upsert(
                types={
                    "tier": "string",
                    "seats": "integer",
                    "mrr": "float",
                    "trial": "boolean",
                    "renews": "date",
                    "hq_city": "string",
                },
                custom_attributes={
                    "tier": "gold",
                    "seats": 5,
                    "mrr": 99.5,
                    "trial": False,
                    "renews": JAN_2020,
                    "hq_city": "Paris",
                },
            )
        ),
    ),
    (
        "arrays, nulls and 300-character values",
        group({"tags": ["a"], "owner": None, "motto": "m" * 300}),
        attached(upsert(types={"motto": "string"}, custom_attributes={"motto": "m" * 255})),
    ),
    (
        "context.active false: last request left alone",
        group(context={"active": False}),
        attached(upsert(touched=False)),
    ),
    ("context.active true", group(context={"active": True}), attached(upsert())),
    ("integrations.Intercom false", group(integrations={"Intercom": False}), Skip("integrations.Intercom is false")),
    (
        "integrations.Intercom object while All is off",
        group(integrations={"All": False, "Intercom": {}}),
        attached(upsert()),
    ),
]


@pytest.mark.parametrize(("event", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_group(event: Event, expected: Plan | Skip) -> None:
    assert map_event(event) == expected
