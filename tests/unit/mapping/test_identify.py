"""identify -> UpsertContact: a table of (id, event, expected Plan or Skip), asserting the exact JSON body."""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.mapping import ContactRef, Plan, Skip, UpsertContact, map_event
from intercom_sidecar.model.events import Event, Identify, JsonObject

TIMESTAMP = 1_700_000_000.75
SEEN = 1_700_000_000  # TIMESTAMP in whole seconds
JAN_2020 = 1_577_836_800  # 2020-01-01T00:00:00Z
JAN_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
ANONYMOUS_SKIP = Skip("identify: no userId or email; anonymous identifies are not sent to Intercom")


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
    types: dict[str, str] | None = None,
) -> Plan:
    return Plan(
        steps=(
            UpsertContact(
                contact=ContactRef(external_id=external_id, email=email), body=body, attribute_types=types or {}
            ),
        )
    )


def user(**fields: Any) -> dict[str, Any]:
    """The body for user u1, seen at TIMESTAMP, plus `fields`."""
    return {"role": "user", "external_id": "u1", "last_seen_at": SEEN, **fields}


CASES: list[tuple[str, Event, Plan | Skip]] = [
    # --- identity ---
    ("user_id only", identify(), upsert(user())),
    (
        "user_id and traits.email",
        identify({"email": " ada@example.com "}),
        upsert(user(email="ada@example.com"), email="ada@example.com"),
    ),
    (
        "email only, from traits",
        identify({"email": "ada@example.com"}, user_id=None),
        upsert(
            {"role": "user", "email": "ada@example.com", "last_seen_at": SEEN},
            external_id=None,
            email="ada@example.com",
        ),
    ),
    (
        "email only, from context.traits",
        identify(user_id=None, context={"traits": {"email": "ctx@example.com"}}),
        upsert(
            {"role": "user", "email": "ctx@example.com", "last_seen_at": SEEN},
            external_id=None,
            email="ctx@example.com",
        ),
    ),
    (
        "traits.email wins over context.traits.email",
        identify({"email": "traits@example.com"}, context={"traits": {"email": "ctx@example.com"}}),
        upsert(user(email="traits@example.com"), email="traits@example.com"),
    ),
    (
        "blank traits.email falls back to context.traits.email",
        identify({"email": "  "}, context={"traits": {"email": "ctx@example.com"}}),
        upsert(user(email="ctx@example.com"), email="ctx@example.com"),
    ),
    ("anonymous without email", identify(user_id=None, anonymous_id="anon-1"), ANONYMOUS_SKIP),
    ("anonymous with a non-string email", identify({"email": 42}, user_id=None), ANONYMOUS_SKIP),
    ("anonymous with context.traits not an object", identify(user_id=None, context={"traits": "x"}), ANONYMOUS_SKIP),
    # --- name ---
    ("name", identify({"name": " Ada Lovelace "}), upsert(user(name="Ada Lovelace"))),
    ("firstName + lastName", identify({"firstName": "Ada", "lastName": "Lovelace"}), upsert(user(name="Ada Lovelace"))),
    (
        "first_name + last_name",
        identify({"first_name": " Ada ", "last_name": " Lovelace"}),
        upsert(user(name="Ada Lovelace")),
    ),
    ("firstName only", identify({"firstName": "Ada"}), upsert(user(name="Ada"))),
    ("lastName only", identify({"lastName": "Lovelace"}), upsert(user(name="Lovelace"))),
    (
        "name wins over firstName + lastName",
        identify({"name": "Countess", "firstName": "Ada", "lastName": "Lovelace"}),
        upsert(user(name="Countess")),
    ),
    ("blank name falls back to firstName", identify({"name": " ", "firstName": "Ada"}), upsert(user(name="Ada"))),
    ("long name truncated to 255", identify({"name": "n" * 300}), upsert(user(name="n" * 255))),
    # --- phone and avatar ---
    ("phone string", identify({"phone": " +44 20 7946 0000 "}), upsert(user(phone="+44 20 7946 0000"))),
    ("phone number becomes a string", identify({"phone": 442079460000}), upsert(user(phone="442079460000"))),
    ("phone bool ignored", identify({"phone": True}), upsert(user())),
    ("avatar", identify({"avatar": "https://example.com/a.png"}), upsert(user(avatar="https://example.com/a.png"))),
    # --- signed_up_at ---
    ("createdAt ISO", identify({"createdAt": "2020-01-01T00:00:00Z"}), upsert(user(signed_up_at=JAN_2020))),
    (
        "createdAt ISO with offset",
        identify({"createdAt": "2020-01-01T01:00:00+01:00"}),
        upsert(user(signed_up_at=JAN_2020)),
    ),
    ("createdAt date only", identify({"createdAt": "2020-01-01"}), upsert(user(signed_up_at=JAN_2020))),
    ("createdAt Unix seconds", identify({"createdAt": JAN_2020}), upsert(user(signed_up_at=JAN_2020))),
    (
        "createdAt Unix milliseconds",
        identify({"createdAt": JAN_2020 * 1000 + 999}),
        upsert(user(signed_up_at=JAN_2020)),
    ),
    ("createdAt fractional seconds", identify({"createdAt": JAN_2020 + 0.9}), upsert(user(signed_up_at=JAN_2020))),
    ("created_at snake case", identify({"created_at": "2020-01-01T00:00:00Z"}), upsert(user(signed_up_at=JAN_2020))),
    ("createdAt not a date", identify({"createdAt": "last tuesday"}), upsert(user())),
    ("createdAt negative", identify({"createdAt": -5}), upsert(user())),
    ("createdAt bool", identify({"createdAt": True}), upsert(user())),
    # --- last_seen_at ---
    (
        "context.active false: no last_seen_at",
        identify(context={"active": False}),
        upsert({"role": "user", "external_id": "u1"}),
    ),
    ("context.active true: last_seen_at", identify(context={"active": True}), upsert(user())),
    # --- unsubscribed_from_emails ---
    (
        "unsubscribedFromEmails true",
        identify(context={"Intercom": {"unsubscribedFromEmails": True}}),
        upsert(user(unsubscribed_from_emails=True)),
    ),
    (
        "unsubscribedFromEmails false",
        identify(context={"Intercom": {"unsubscribedFromEmails": False}}),
        upsert(user(unsubscribed_from_emails=False)),
    ),
    (
        "unsubscribedFromEmails not a bool",
        identify(context={"Intercom": {"unsubscribedFromEmails": "yes"}}),
        upsert(user()),
    ),
    ("context.Intercom not an object", identify(context={"Intercom": True}), upsert(user())),
    # --- custom attributes ---
    (
        "custom attributes and their types",
        identify({"plan": "pro", "seats": 5, "score": 9.5, "vip": True}),
        upsert(
            user(custom_attributes={"plan": "pro", "seats": 5, "score": 9.5, "vip": True}),
            types={"plan": "string", "seats": "integer", "score": "float", "vip": "boolean"},
        ),
    ),
    (
        "nested traits flattened with _",
        identify({"address": {"city": "Paris", "geo": {"lat": 48.85}}}),
        upsert(
            user(custom_attributes={"address_city": "Paris", "address_geo_lat": 48.85}),
            types={"address_city": "string", "address_geo_lat": "float"},
        ),
    ),
    (
        "arrays and nulls dropped",
        identify({"tags": ["a", "b"], "nickname": None, "plan": "pro", "nested": {"list": [1], "none": None}}),
        upsert(user(custom_attributes={"plan": "pro"}), types={"plan": "string"}),
    ),
    (
        "keys with . and $ cleaned",
        identify({"utm.source": "ads", "$credits": 3, "a": {"b.c": True}}),
        upsert(
            user(custom_attributes={"utm_source": "ads", "_credits": 3, "a_b_c": True}),
            types={"utm_source": "string", "_credits": "integer", "a_b_c": "boolean"},
        ),
    ),
    (
        "long key cut to 190 characters",
        identify({"k" * 200: 1}),
        upsert(user(custom_attributes={"k" * 190: 1}), types={"k" * 190: "integer"}),
    ),
    (
        "300-character string truncated to 255",
        identify({"bio": "b" * 300}),
        upsert(user(custom_attributes={"bio": "b" * 255}), types={"bio": "string"}),
    ),
    (
        "ISO date trait -> Unix seconds, typed date",
        identify({"trial_ends": "2024-01-01T00:00:00Z", "renewal": "2024-01-01"}),
        upsert(
            user(custom_attributes={"trial_ends": JAN_2024, "renewal": JAN_2024}),
            types={"trial_ends": "date", "renewal": "date"},
        ),
    ),
    (
        "string that only looks numeric stays a string",
        identify({"zip": "75001"}),
        upsert(user(custom_attributes={"zip": "75001"}), types={"zip": "string"}),
    ),
    (
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
        ),
    ),
    (
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
]


@pytest.mark.parametrize(("event", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_identify(event: Event, expected: Plan | Skip) -> None:
    assert map_event(event) == expected


def test_identify_body_is_json_ready() -> None:
    """The body is what goes on the wire: only JSON types, no nested objects besides custom_attributes."""
    plan = map_event(identify({"plan": "pro", "address": {"city": "Paris"}}))
    assert isinstance(plan, Plan)
    (step,) = plan.steps
    assert isinstance(step, UpsertContact)
    custom = step.body["custom_attributes"]
    assert all(isinstance(value, str | int | float | bool) for value in custom.values())
    assert set(custom) == set(step.attribute_types)


def test_contact_key_prefers_external_id() -> None:
    assert ContactRef(external_id="u1", email="A@Example.com").key == "external_id:u1"
    assert ContactRef(external_id=None, email="A@Example.com").key == "email:a@example.com"
