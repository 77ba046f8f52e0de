"""track -> CreateDataEvent: one table of (id, event, expected Plan or Skip, options), asserting the exact JSON body."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping import ContactRef, CreateDataEvent, Plan, Skip, map_event
from intercom_sidecar.mapping.track import MAX_METADATA_KEYS, metadata_of
from intercom_sidecar.model.events import Event, JsonObject, Track

TIMESTAMP = 1_700_000_000.75
CREATED = 1_700_000_000
ANONYMOUS_SKIP = Skip("track: no userId or email; anonymous events are not sent to Intercom")


def track(
    properties: JsonObject | None = None,
    *,
    name: str = "Order Completed",
    user_id: str | None = "u1",
    context: JsonObject | None = None,
    timestamp: float = TIMESTAMP,
    integrations: JsonObject | None = None,
) -> Event:
    return Event(
        message_id="m1",
        user_id=user_id,
        anonymous_id=None if user_id is not None else "anon-1",
        timestamp=timestamp,
        call=Track(event=name, properties=properties or {}),
        context=context or {},
        integrations=integrations or {},
    )


def data_event(
    body: dict[str, Any],
    *,
    external_id: str | None = "u1",
    email: str | None = None,
    create_missing: bool = True,
    dropped: int = 0,
) -> Plan:
    contact = ContactRef(external_id=external_id, email=email)
    step = CreateDataEvent(
        contact=contact, body=body, create_missing_contact=create_missing, dropped_metadata_keys=dropped
    )
    return Plan(steps=(step,))


def by_user(**fields: Any) -> dict[str, Any]:
    return {"event_name": "Order Completed", "created_at": CREATED, "user_id": "u1", **fields}


def price(amount: int, currency: str = "usd") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


FOURTEEN = {f"p{n:02d}": n for n in range(1, 14)} | {"revenue": 5}


class Case(NamedTuple):
    id: str
    event: Event
    expected: Plan | Skip
    options: MappingConfig = MappingConfig()


CASES: list[Case] = [
    # --- who ---
    Case("user_id, no properties: no metadata", track(), data_event(by_user())),
    Case(
        "user_id wins over email; the contact keeps both",
        track({"email": "ada@example.com"}),
        data_event(by_user(metadata={"email": "ada@example.com"}), email="ada@example.com"),
    ),
    Case(
        "email fallback from properties",
        track({"email": "ada@example.com"}, user_id=None),
        data_event(
            {
                "event_name": "Order Completed",
                "created_at": CREATED,
                "email": "ada@example.com",
                "metadata": {"email": "ada@example.com"},
            },
            external_id=None,
            email="ada@example.com",
        ),
    ),
    Case(
        "email fallback from context.traits",
        track(user_id=None, context={"traits": {"email": "ctx@example.com"}}),
        data_event(
            {"event_name": "Order Completed", "created_at": CREATED, "email": "ctx@example.com"},
            external_id=None,
            email="ctx@example.com",
        ),
    ),
    Case("anonymous -> Skip", track(user_id=None), ANONYMOUS_SKIP),
    Case("anonymous with a blank email -> Skip", track({"email": "  "}, user_id=None), ANONYMOUS_SKIP),
    # --- event name and time ---
    Case("event name stripped", track(name="  Signed Up \n"), data_event(by_user(event_name="Signed Up"))),
    Case("event name truncated to 255", track(name="e" * 300), data_event(by_user(event_name="e" * 255))),
    Case(
        "created_at is the event's own timestamp",
        track(timestamp=1_600_000_000.9),
        data_event(by_user(created_at=1_600_000_000)),
    ),
    # --- money ---
    Case(
        "revenue 19.99 -> 1999 cents", track({"revenue": 19.99}), data_event(by_user(metadata={"price": price(1999)}))
    ),
    Case(
        "revenue 0.1 + 0.2 -> 30 cents",
        track({"revenue": 0.1 + 0.2}),
        data_event(by_user(metadata={"price": price(30)})),
    ),
    Case("revenue whole number", track({"revenue": 20}), data_event(by_user(metadata={"price": price(2000)}))),
    Case("revenue string", track({"revenue": " 19.99 "}), data_event(by_user(metadata={"price": price(1999)}))),
    Case("revenue rounds half up", track({"revenue": 0.125}), data_event(by_user(metadata={"price": price(13)}))),
    Case(
        "currency lower-cased",
        track({"revenue": 10, "currency": " EUR "}),
        data_event(by_user(metadata={"price": price(1000, "eur")})),
    ),
    Case(
        "blank currency -> usd",
        track({"revenue": 10, "currency": " "}),
        data_event(by_user(metadata={"price": price(1000)})),
    ),
    Case("total when there is no revenue", track({"total": 5.5}), data_event(by_user(metadata={"price": price(550)}))),
    Case(
        "revenue wins over total; both removed from metadata",
        track({"total": 5, "revenue": 7}),
        data_event(by_user(metadata={"price": price(700)})),
    ),
    Case(
        "revenue not a number: total used",
        track({"revenue": "n/a", "total": 3}),
        data_event(by_user(metadata={"price": price(300)})),
    ),
    Case("revenue bool: no price", track({"revenue": True}), data_event(by_user())),
    Case("currency without an amount is dropped", track({"currency": "eur"}), data_event(by_user())),
    # --- metadata ---
    Case(
        "scalar properties kept",
        track({"sku": "A-1", "qty": 2, "gift": False, "weight": 1.5}),
        data_event(by_user(metadata={"sku": "A-1", "qty": 2, "gift": "false", "weight": 1.5})),
    ),
    Case(
        "nested properties flattened, arrays and nulls dropped",
        track({"product": {"id": "p1", "tags": ["x"], "dims": {"w": 2}}, "items": [1, 2], "coupon": None}),
        data_event(by_user(metadata={"product_id": "p1", "product_dims_w": 2})),
    ),
    Case(
        "metadata keys cleaned",
        track({"utm.source": "ads", "$ref": "x"}),
        data_event(by_user(metadata={"utm_source": "ads", "_ref": "x"})),
    ),
    Case("long string value truncated", track({"note": "n" * 300}), data_event(by_user(metadata={"note": "n" * 255}))),
    Case(
        "14 properties -> 10 kept, money first",
        track(FOURTEEN),
        data_event(by_user(metadata={"price": price(500)} | {f"p{n:02d}": n for n in range(1, 10)}), dropped=4),
    ),
    Case(
        "a price property does not overwrite the money value",
        track({"revenue": 1, "price": 99}),
        data_event(by_user(metadata={"price": price(100)})),
    ),
    Case(
        "more than 10 after flattening: the first in the event's order",
        track({"a": {f"k{n}": n for n in range(12)}, "z": "last"}),
        data_event(by_user(metadata={f"a_k{n}": n for n in range(10)}), dropped=3),
    ),
    Case(
        "booleans as strings",
        track({"gift": True, "paid": False}),
        data_event(by_user(metadata={"gift": "true", "paid": "false"})),
    ),
    Case(
        "properties.id is metadata, never the contact's id",
        track({"id": "5f7f0d217289f8d2f4262080"}),
        data_event(by_user(metadata={"id": "5f7f0d217289f8d2f4262080"})),
    ),
    Case(
        "missing contacts are not created when the setting is off",
        track({"sku": "A-1"}),
        data_event(by_user(metadata={"sku": "A-1"}), create_missing=False),
        MappingConfig(create_missing_contacts=False),
    ),
    Case(
        "leads and page mode change nothing for track",
        track(),
        data_event(by_user()),
        MappingConfig(leads=True, page_mode="event"),
    ),
    Case(
        "Intercom enabled while All is off",
        track(integrations={"All": False, "Intercom": True}),
        data_event(by_user()),
    ),
    Case(
        "integrations.Intercom false -> Skip",
        track(integrations={"Intercom": False}),
        Skip("integrations.Intercom is false"),
    ),
]


@pytest.mark.parametrize(
    ("event", "expected", "options"), [case[1:] for case in CASES], ids=[case.id for case in CASES]
)
def test_track(event: Event, expected: Plan | Skip, options: MappingConfig) -> None:
    assert map_event(event, options) == expected


def test_metadata_order_is_money_first_then_the_event_order() -> None:
    metadata = metadata_of(FOURTEEN)
    assert len(metadata) == MAX_METADATA_KEYS == 10
    assert list(metadata) == ["price", *(f"p{n:02d}" for n in range(1, 10))]


def test_created_at_is_stable_across_resends() -> None:
    """A re-send of the same event maps to the same body, so Intercom's duplicate check absorbs it."""
    first = map_event(track({"revenue": 19.99}))
    again = map_event(track({"revenue": 19.99}))
    assert first == again
    assert isinstance(first, Plan)
    assert first.steps[0].body["created_at"] == CREATED
