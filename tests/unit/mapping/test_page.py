"""page and screen in each `page_mode`: a table of (id, event, mode, expected Plan or Skip)."""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping import ContactRef, CreateDataEvent, Plan, Skip, UpsertContact, map_event
from intercom_sidecar.model.events import Event, JsonObject, Page, Screen

TIMESTAMP = 1_700_000_000.75
SEEN = 1_700_000_000
U1 = ContactRef(external_id="u1", email=None)


def view(
    kind: type[Page | Screen] = Page,
    name: str = "Pricing",
    category: str = "",
    properties: JsonObject | None = None,
    *,
    user_id: str | None = "u1",
    context: JsonObject | None = None,
) -> Event:
    return Event(
        message_id="m1",
        user_id=user_id,
        anonymous_id=None if user_id is not None else "anon-1",
        timestamp=TIMESTAMP,
        call=kind(name=name, category=category, properties=properties or {}),
        context=context or {},
        integrations={},
    )


def viewed(name: str, contact: ContactRef = U1, *, create_missing: bool = True, **fields: Any) -> Plan:
    body = {"event_name": name, "created_at": SEEN, **({"user_id": "u1"} if contact.external_id else {}), **fields}
    return Plan(steps=(CreateDataEvent(contact=contact, body=body, create_missing_contact=create_missing),))


def seen(contact: ContactRef = U1) -> Plan:
    body = {**contact.identity, "last_seen_at": SEEN}
    return Plan(steps=(UpsertContact(contact=contact, body=body, attribute_types={}),))


IGNORED_PAGE = Skip("page: not sent to Intercom (INTERCOM_SIDECAR_PAGE_MODE is ignore)")
IGNORED_SCREEN = Skip("screen: not sent to Intercom (INTERCOM_SIDECAR_PAGE_MODE is ignore)")
ADA = ContactRef(external_id=None, email="ada@example.com")

CASES: list[tuple[str, Event, str, Plan | Skip]] = [
    # --- ignore (the default) ---
    ("ignore: page", view(), "ignore", IGNORED_PAGE),
    ("ignore: screen", view(Screen), "ignore", IGNORED_SCREEN),
    ("ignore: even with properties", view(properties={"path": "/pricing"}), "ignore", IGNORED_PAGE),
    # --- event ---
    ("event: page", view(), "event", viewed("Viewed Pricing Page")),
    ("event: screen", view(Screen, "Home"), "event", viewed("Viewed Home Screen")),
    ("event: name stripped", view(name="  Pricing "), "event", viewed("Viewed Pricing Page")),
    ("event: no name, the category", view(name="", category="Docs"), "event", viewed("Viewed Docs Page")),
    ("event: neither name nor category", view(name=" ", category=""), "event", viewed("Viewed Page")),
    ("event: neither, screen", view(Screen, name=""), "event", viewed("Viewed Screen")),
    ("event: name wins over category", view(name="Pricing", category="Docs"), "event", viewed("Viewed Pricing Page")),
    (
        "event: properties as metadata",
        view(properties={"path": "/pricing", "referrer": {"host": "google"}, "tags": ["x"], "revenue": 1.5}),
        "event",
        viewed(
            "Viewed Pricing Page",
            metadata={"price": {"amount": 150, "currency": "usd"}, "path": "/pricing", "referrer_host": "google"},
        ),
    ),
    (
        "event: email-only visitor",
        view(properties={"email": "ada@example.com"}, user_id=None),
        "event",
        viewed("Viewed Pricing Page", ADA, email="ada@example.com", metadata={"email": "ada@example.com"}),
    ),
    (
        "event: anonymous -> Skip",
        view(user_id=None),
        "event",
        Skip("page: no userId or email; anonymous events are not sent to Intercom"),
    ),
    (
        "event: anonymous screen -> Skip",
        view(Screen, user_id=None),
        "event",
        Skip("screen: no userId or email; anonymous events are not sent to Intercom"),
    ),
    # --- last_seen ---
    ("last_seen: page", view(), "last_seen", seen()),
    ("last_seen: screen", view(Screen), "last_seen", seen()),
    ("last_seen: properties are not sent", view(properties={"path": "/x", "plan": "pro"}), "last_seen", seen()),
    (
        "last_seen: email-only visitor (properties.email)",
        view(properties={"email": "ada@example.com"}, user_id=None),
        "last_seen",
        seen(ADA),
    ),
    (
        "last_seen: email-only visitor (context.traits.email)",
        view(user_id=None, context={"traits": {"email": "ada@example.com"}}),
        "last_seen",
        seen(ADA),
    ),
    (
        "last_seen: anonymous -> Skip",
        view(user_id=None),
        "last_seen",
        Skip("page: no userId or email; anonymous views are not sent to Intercom"),
    ),
    (
        "last_seen: context.active false -> Skip",
        view(context={"active": False}),
        "last_seen",
        Skip("page: context.active is false, so last seen is left alone"),
    ),
    (
        "last_seen: inactive screen -> Skip",
        view(Screen, context={"active": False}),
        "last_seen",
        Skip("screen: context.active is false, so last seen is left alone"),
    ),
]


@pytest.mark.parametrize(("event", "mode", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_page(event: Event, mode: str, expected: Plan | Skip) -> None:
    assert map_event(event, MappingConfig(page_mode=mode)) == expected


def test_page_event_follows_create_missing_contacts() -> None:
    options = MappingConfig(page_mode="event", create_missing_contacts=False)
    assert map_event(view(), options) == viewed("Viewed Pricing Page", create_missing=False)


def test_default_page_mode_is_ignore() -> None:
    assert map_event(view()) == IGNORED_PAGE
