"""identify -> UpsertContact (and its companies): one table of (id, event, expected Plan or Skip, options),
asserting the exact JSON bodies and the step sequence."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping import (
    AttachCompany,
    ContactRef,
    DetachCompany,
    Plan,
    Skip,
    Step,
    UpsertCompany,
    UpsertContact,
    map_event,
)
from intercom_sidecar.model.events import Event, Identify, JsonObject

TIMESTAMP = 1_700_000_000.75
SEEN = 1_700_000_000  # TIMESTAMP in whole seconds
JAN_2020 = 1_577_836_800  # 2020-01-01T00:00:00Z
JAN_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
ANONYMOUS_SKIP = Skip("identify: no userId or email; anonymous identifies are not sent (leads are disabled)")
LEADS = MappingConfig(leads=True)
U1 = ContactRef(external_id="u1", email=None)
ADA = ContactRef(external_id="u1", email="ada@example.com")
ANON_LEAD = ContactRef(external_id="anon-1", email=None, role="lead")
ACME_INC = "name-42cf7a26a3123b9e6ad1b2b2"  # company_id_for_name("Acme Inc"): pinned, it must never change


def identify(
    traits: JsonObject | None = None,
    *,
    user_id: str | None = "u1",
    anonymous_id: str | None = None,
    context: JsonObject | None = None,
) -> Event:
    return Event(
        message_id="m1",
        user_id=user_id,
        anonymous_id=anonymous_id or (None if user_id is not None else "anon-1"),  # every event has one id
        timestamp=TIMESTAMP,
        call=Identify(traits=traits or {}),
        context=context or {},
        integrations={},
    )


def upsert(
    body: dict[str, Any],
    *,
    external_id: str | None = "u1",
    email: str | None = None,
    role: str = "user",
    types: dict[str, str] | None = None,
    then: tuple[Step, ...] = (),
) -> Plan:
    contact = ContactRef(external_id=external_id, email=email, role=role)
    return Plan(steps=(UpsertContact(contact=contact, body=body, attribute_types=types or {}), *then))


def company(
    company_id: str, *, types: dict[str, str] | None = None, touched: bool = True, **fields: Any
) -> UpsertCompany:
    """The upsert of `company_id` with `fields`, and update_last_request_at when `touched`."""
    body = {"company_id": company_id, **fields, **({"update_last_request_at": True} if touched else {})}
    return UpsertCompany(company_id=company_id, body=body, attribute_types=types or {})


def joined(company_id: str, contact: ContactRef = U1, **fields: Any) -> tuple[UpsertCompany, AttachCompany]:
    """Upsert `company_id` with `fields`, then attach `contact` to it."""
    return company(company_id, **fields), AttachCompany(contact=contact, company_id=company_id)


class Case(NamedTuple):
    id: str
    event: Event
    expected: Plan | Skip
    options: MappingConfig = MappingConfig()


def user(**fields: Any) -> dict[str, Any]:
    """The body for user u1, seen at TIMESTAMP, plus `fields`."""
    return {"role": "user", "external_id": "u1", "last_seen_at": SEEN, **fields}


CASES: list[Case] = [
    # --- identity ---
    Case("user_id only", identify(), upsert(user())),
    Case(
        "user_id and traits.email",
        identify({"email": " ada@example.com "}),
        upsert(user(email="ada@example.com"), email="ada@example.com"),
    ),
    Case(
        "email only, from traits",
        identify({"email": "ada@example.com"}, user_id=None),
        upsert(
            {"role": "user", "email": "ada@example.com", "last_seen_at": SEEN},
            external_id=None,
            email="ada@example.com",
        ),
    ),
    Case(
        "email only, from context.traits",
        identify(user_id=None, context={"traits": {"email": "ctx@example.com"}}),
        upsert(
            {"role": "user", "email": "ctx@example.com", "last_seen_at": SEEN},
            external_id=None,
            email="ctx@example.com",
        ),
    ),
    Case(
        "traits.email wins over context.traits.email",
        identify({"email": "traits@example.com"}, context={"traits": {"email": "ctx@example.com"}}),
        upsert(user(email="traits@example.com"), email="traits@example.com"),
    ),
    Case(
        "blank traits.email falls back to context.traits.email",
        identify({"email": "  "}, context={"traits": {"email": "ctx@example.com"}}),
        upsert(user(email="ctx@example.com"), email="ctx@example.com"),
    ),
    Case("anonymous without email", identify(user_id=None, anonymous_id="anon-1"), ANONYMOUS_SKIP),
    Case("anonymous with a non-string email", identify({"email": 42}, user_id=None), ANONYMOUS_SKIP),
    Case(
        "anonymous with context.traits not an object", identify(user_id=None, context={"traits": "x"}), ANONYMOUS_SKIP
    ),
    # --- name ---
    Case("name", identify({"name": " Ada Lovelace "}), upsert(user(name="Ada Lovelace"))),
    Case(
        "firstName + lastName",
        identify({"firstName": "Ada", "lastName": "Lovelace"}),
        upsert(user(name="Ada Lovelace")),
    ),
    Case(
        "first_name + last_name",
        identify({"first_name": " Ada ", "last_name": " Lovelace"}),
        upsert(user(name="Ada Lovelace")),
    ),
    Case("firstName only", identify({"firstName": "Ada"}), upsert(user(name="Ada"))),
    Case("lastName only", identify({"lastName": "Lovelace"}), upsert(user(name="Lovelace"))),
    Case(
        "name wins over firstName + lastName",
        identify({"name": "Countess", "firstName": "Ada", "lastName": "Lovelace"}),
        upsert(user(name="Countess")),
    ),
    Case("blank name falls back to firstName", identify({"name": " ", "firstName": "Ada"}), upsert(user(name="Ada"))),
    Case("long name truncated to 255", identify({"name": "n" * 300}), upsert(user(name="n" * 255))),
    # --- phone and avatar ---
    Case("phone string", identify({"phone": " +44 20 7946 0000 "}), upsert(user(phone="+44 20 7946 0000"))),
    Case("phone number becomes a string", identify({"phone": 442079460000}), upsert(user(phone="442079460000"))),
    Case("phone bool ignored", identify({"phone": True}), upsert(user())),
    Case("avatar", identify({"avatar": "https://example.com/a.png"}), upsert(user(avatar="https://example.com/a.png"))),
    # --- signed_up_at ---
    Case("createdAt ISO", identify({"createdAt": "2020-01-01T00:00:00Z"}), upsert(user(signed_up_at=JAN_2020))),
    Case(
        "createdAt ISO with offset",
        identify({"createdAt": "2020-01-01T01:00:00+01:00"}),
        upsert(user(signed_up_at=JAN_2020)),
    ),
    Case("createdAt date only", identify({"createdAt": "2020-01-01"}), upsert(user(signed_up_at=JAN_2020))),
    Case("createdAt Unix seconds", identify({"createdAt": JAN_2020}), upsert(user(signed_up_at=JAN_2020))),
    Case(
        "createdAt Unix milliseconds",
        identify({"createdAt": JAN_2020 * 1000 + 999}),
        upsert(user(signed_up_at=JAN_2020)),
    ),
    Case("createdAt fractional seconds", identify({"createdAt": JAN_2020 + 0.9}), upsert(user(signed_up_at=JAN_2020))),
    Case(
        "created_at snake case", identify({"created_at": "2020-01-01T00:00:00Z"}), upsert(user(signed_up_at=JAN_2020))
    ),
    Case("createdAt not a date", identify({"createdAt": "last tuesday"}), upsert(user())),
    Case("createdAt negative", identify({"createdAt": -5}), upsert(user())),
    Case("createdAt bool", identify({"createdAt": True}), upsert(user())),
    # --- last_seen_at ---
    Case(
        "context.active false: no last_seen_at",
        identify(context={"active": False}),
        upsert({"role": "user", "external_id": "u1"}),
    ),
    Case("context.active true: last_seen_at", identify(context={"active": True}), upsert(user())),
    # --- unsubscribed_from_emails ---
    Case(
        "unsubscribedFromEmails true",
        identify(context={"Intercom": {"unsubscribedFromEmails": True}}),
        upsert(user(unsubscribed_from_emails=True)),
    ),
    Case(
        "unsubscribedFromEmails false",
        identify(context={"Intercom": {"unsubscribedFromEmails": False}}),
        upsert(user(unsubscribed_from_emails=False)),
    ),
    Case(
        "unsubscribedFromEmails not a bool",
        identify(context={"Intercom": {"unsubscribedFromEmails": "yes"}}),
        upsert(user()),
    ),
    Case("context.Intercom not an object", identify(context={"Intercom": True}), upsert(user())),
    # --- custom attributes ---
    Case(
        "custom attributes and their types",
        identify({"plan": "pro", "seats": 5, "score": 9.5, "vip": True}),
        upsert(
            user(custom_attributes={"plan": "pro", "seats": 5, "score": 9.5, "vip": True}),
            types={"plan": "string", "seats": "integer", "score": "float", "vip": "boolean"},
        ),
    ),
    Case(
        "nested traits flattened with _",
        identify({"address": {"city": "Paris", "geo": {"lat": 48.85}}}),
        upsert(
            user(custom_attributes={"address_city": "Paris", "address_geo_lat": 48.85}),
            types={"address_city": "string", "address_geo_lat": "float"},
        ),
    ),
    Case(
        "arrays and nulls dropped",
        identify({"tags": ["a", "b"], "nickname": None, "plan": "pro", "nested": {"list": [1], "none": None}}),
        upsert(user(custom_attributes={"plan": "pro"}), types={"plan": "string"}),
    ),
    Case(
        "keys with . and $ cleaned",
        identify({"utm.source": "ads", "$credits": 3, "a": {"b.c": True}}),
        upsert(
            user(custom_attributes={"utm_source": "ads", "_credits": 3, "a_b_c": True}),
            types={"utm_source": "string", "_credits": "integer", "a_b_c": "boolean"},
        ),
    ),
    Case(
        "long key cut to 190 characters",
        identify({"k" * 200: 1}),
        upsert(user(custom_attributes={"k" * 190: 1}), types={"k" * 190: "integer"}),
    ),
    Case(
        "300-character string truncated to 255",
        identify({"bio": "b" * 300}),
        upsert(user(custom_attributes={"bio": "b" * 255}), types={"bio": "string"}),
    ),
    Case(
        "ISO date trait -> Unix seconds, typed date",
        identify({"trial_ends": "2024-01-01T00:00:00Z", "renewal": "2024-01-01"}),
        upsert(
            user(custom_attributes={"trial_ends": JAN_2024, "renewal": JAN_2024}),
            types={"trial_ends": "date", "renewal": "date"},
        ),
    ),
    Case(
        "string that only looks numeric stays a string",
        identify({"zip": "75001"}),
        upsert(user(custom_attributes={"zip": "75001"}), types={"zip": "string"}),
    ),
    Case(
        "standard and identity traits are not custom attributes",
        identify(
            {
                "email": "ada@example.com",
                "name": "Ada",
                "phone": "1",
                "avatar": "https://a",
                "createdAt": JAN_2020,
                "id": "u1",
                "userId": "u1",
                "user_id": "u1",
                "company": {"id": "c1"},
                "companies": [{"id": "c1"}],
                "firstName": "A",
                "lastName": "L",
                "first_name": "A",
                "last_name": "L",
                "created_at": JAN_2020,
            }
        ),
        upsert(
            user(email="ada@example.com", name="Ada", phone="1", avatar="https://a", signed_up_at=JAN_2020),
            email="ada@example.com",
            then=(*joined("c1", ADA), *joined("c1", ADA)),
        ),
    ),
    Case(
        "Segment's documented example",
        Event(
            message_id="m1",
            user_id="4832094283057439285723523452345",
            anonymous_id="43254364571",
            timestamp=TIMESTAMP,
            call=Identify(traits={"firstName": "John ", "lastName": "Jacob", "email": "jingleheimer@schmidt.com"}),
            context={"Intercom": {"unsubscribedFromEmails": True}},
            integrations={},
        ),
        upsert(
            {
                "role": "user",
                "external_id": "4832094283057439285723523452345",
                "email": "jingleheimer@schmidt.com",
                "name": "John Jacob",
                "last_seen_at": SEEN,
                "unsubscribed_from_emails": True,
            },
            external_id="4832094283057439285723523452345",
            email="jingleheimer@schmidt.com",
        ),
    ),
    # --- leads ---
    Case(
        "leads on: anonymous identify -> a lead keyed by anonymousId",
        identify({"name": "Visitor", "plan": "free"}, user_id=None, anonymous_id="anon-1"),
        upsert(
            {
                "role": "lead",
                "external_id": "anon-1",
                "name": "Visitor",
                "last_seen_at": SEEN,
                "custom_attributes": {"plan": "free"},
            },
            external_id="anon-1",
            role="lead",
            types={"plan": "string"},
        ),
        LEADS,
    ),
    Case("leads on: a userId is still a user", identify(), upsert(user()), LEADS),
    Case(
        "leads on: an email without userId is a user",
        identify({"email": "ada@example.com"}, user_id=None),
        upsert(
            {"role": "user", "email": "ada@example.com", "last_seen_at": SEEN},
            external_id=None,
            email="ada@example.com",
        ),
        LEADS,
    ),
    Case("leads off: anonymous identify with traits -> Skip", identify({"name": "V"}, user_id=None), ANONYMOUS_SKIP),
    Case(
        "leads on: a lead's company is attached to the lead",
        identify({"company": "Acme Inc"}, user_id=None, anonymous_id="anon-1"),
        upsert(
            {"role": "lead", "external_id": "anon-1", "last_seen_at": SEEN},
            external_id="anon-1",
            role="lead",
            then=joined(ACME_INC, ANON_LEAD, name="Acme Inc"),
        ),
        LEADS,
    ),
    # --- companies (traits.company, traits.companies) ---
    Case(
        "company object: standard fields and custom attributes",
        identify(
            {
                "company": {
                    "id": "acme",
                    "name": " Acme ",
                    "plan": "pro",
                    "monthly_spend": 99.9,
                    "employees": 50,
                    "industry": "Software",
                    "website": "https://acme.example",
                    "createdAt": "2020-01-01T00:00:00Z",
                    "tier": "gold",
                    "hq": {"city": "Paris", "floors": [1, 2]},
                    "tags": ["b2b"],
                    "founded": "2001-02-03",
                    "note": "n" * 300,
                }
            }
        ),
        upsert(
            user(),
            then=(
                company(
                    "acme",
                    types={"tier": "string", "hq_city": "string", "founded": "date", "note": "string"},
                    name="Acme",
                    plan="pro",
                    industry="Software",
                    website="https://acme.example",
                    size=50,
                    monthly_spend=99,
                    remote_created_at=JAN_2020,
                    custom_attributes={"tier": "gold", "hq_city": "Paris", "founded": 981_158_400, "note": "n" * 255},
                ),
                AttachCompany(contact=U1, company_id="acme"),
            ),
        ),
    ),
    Case(
        "company as a string -> a stable hashed id, the string as name",
        identify({"company": " Acme Inc "}),
        upsert(user(), then=joined(ACME_INC, name="Acme Inc")),
    ),
    Case(
        "company id as a number",
        identify({"company": {"id": 42, "name": "A"}}),
        upsert(user(), then=joined("42", name="A")),
    ),
    Case(
        "company_id instead of id", identify({"company": {"company_id": "acme"}}), upsert(user(), then=joined("acme"))
    ),
    Case(
        "company without an id: the id is hashed from its name",
        identify({"company": {"name": "Acme Inc", "plan": "pro"}}),
        upsert(user(), then=joined(ACME_INC, name="Acme Inc", plan="pro")),
    ),
    Case("company with neither id nor name: nothing", identify({"company": {"plan": "pro"}}), upsert(user())),
    Case("company neither object nor string: nothing", identify({"company": 7}), upsert(user())),
    Case("blank company string: nothing", identify({"company": "  "}), upsert(user())),
    Case(
        "employees as a string (Segment's spec type) -> size",
        identify({"company": {"id": "acme", "employees": "50"}}),
        upsert(user(), then=joined("acme", size=50)),
    ),
    Case(
        "employees negative or not a number: no size",
        identify({"company": {"id": "acme", "employees": "many"}, "companies": [{"id": "b", "employees": -1}]}),
        upsert(user(), then=(*joined("acme"), *joined("b"))),
    ),
    Case(
        "companies list, in order; remove detaches; junk entries skipped",
        identify({"companies": [{"id": "a", "name": "A"}, "Acme Inc", {"id": "b", "remove": True}, None, [1]]}),
        upsert(
            user(),
            then=(
                *joined("a", name="A"),
                *joined(ACME_INC, name="Acme Inc"),
                DetachCompany(contact=U1, company_id="b"),
            ),
        ),
    ),
    Case(
        "company first, then companies",
        identify({"company": {"id": "a"}, "companies": [{"id": "b"}]}),
        upsert(user(), then=(*joined("a"), *joined("b"))),
    ),
    Case("companies not a list: nothing", identify({"companies": {"id": "a"}}), upsert(user())),
    Case(
        "company {id, remove: true} -> detach only",
        identify({"company": {"id": "acme", "remove": True, "name": "Acme"}}),
        upsert(user(), then=(DetachCompany(contact=U1, company_id="acme"),)),
    ),
    Case(
        "company {name, remove: true} -> detach the hashed id",
        identify({"company": {"name": "Acme Inc", "remove": True}}),
        upsert(user(), then=(DetachCompany(contact=U1, company_id=ACME_INC),)),
    ),
    Case(
        "remove not exactly true: upsert and attach",
        identify({"company": {"id": "acme", "remove": "yes"}}),
        upsert(user(), then=joined("acme")),
    ),
    Case(
        "context.active false: the company's last request is left alone too",
        identify({"company": {"id": "acme", "name": "Acme"}}, context={"active": False}),
        upsert({"role": "user", "external_id": "u1"}, then=joined("acme", name="Acme", touched=False)),
    ),
    Case(
        "email-only contact with a company",
        identify({"email": "ada@example.com", "company": {"id": "acme"}}, user_id=None),
        upsert(
            {"role": "user", "email": "ada@example.com", "last_seen_at": SEEN},
            external_id=None,
            email="ada@example.com",
            then=joined("acme", ContactRef(external_id=None, email="ada@example.com")),
        ),
    ),
]


@pytest.mark.parametrize(
    ("event", "expected", "options"), [case[1:] for case in CASES], ids=[case.id for case in CASES]
)
def test_identify(event: Event, expected: Plan | Skip, options: MappingConfig) -> None:
    assert map_event(event, options) == expected


def test_identify_body_is_json_ready() -> None:
    """The body is what goes on the wire: only JSON types, no nested objects besides custom_attributes."""
    plan = map_event(identify({"plan": "pro", "address": {"city": "Paris"}}))
    assert isinstance(plan, Plan)
    (step,) = plan.steps
    assert isinstance(step, UpsertContact)
    custom = step.body["custom_attributes"]
    assert all(isinstance(value, str | int | float | bool) for value in custom.values())
    assert set(custom) == set(step.attribute_types)


def test_contact_key_names_the_role_and_prefers_external_id() -> None:
    assert ContactRef(external_id="u1", email="A@Example.com").key == "user:external_id:u1"
    assert ContactRef(external_id=None, email="A@Example.com").key == "user:email:a@example.com"
    assert ContactRef(external_id="u1", email=None, role="lead").key == "lead:external_id:u1"


def test_contact_identity_is_the_smallest_create_body() -> None:
    assert ContactRef(external_id="u1", email="a@example.com").identity == {
        "role": "user",
        "external_id": "u1",
        "email": "a@example.com",
    }
    assert ContactRef(external_id=None, email="a@example.com").identity == {"role": "user", "email": "a@example.com"}
    assert ContactRef(external_id="anon-1", email=None, role="lead").identity == {
        "role": "lead",
        "external_id": "anon-1",
    }
