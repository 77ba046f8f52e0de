"""track -> an Intercom data event (`POST /events`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping.fields import clean_key, flatten, to_cents, to_unix_seconds, truncate
from intercom_sidecar.mapping.identify import contact_email
from intercom_sidecar.mapping.plan import ContactRef, CreateDataEvent, Plan, Skip
from intercom_sidecar.model.events import Event, JsonObject, Track

__all__ = ["MAX_METADATA_KEYS", "data_event", "map_track", "metadata_of"]

MAX_METADATA_KEYS = 10
"""Intercom keeps at most ten metadata keys per event."""

_MONEY_KEYS = ("revenue", "total")
_NOT_METADATA = frozenset((*_MONEY_KEYS, "currency"))
"""Properties that make up `price` rather than metadata values of their own."""


def map_track(event: Event, call: Track, options: MappingConfig) -> Plan | Skip:
    return data_event(event, call.event, call.properties, options)


def data_event(event: Event, name: str, properties: JsonObject, options: MappingConfig) -> Plan | Skip:
    """The plan of one data event named `name` for `event`'s user, with `properties` as metadata."""
    email = contact_email(properties, event.context)
    if event.user_id is None and email is None:
        return Skip(f"{event.type}: no userId or email; anonymous events are not sent to Intercom")
    # created_at comes from the event's own timestamp, so a re-send carries the same value and Intercom's
    # duplicate check absorbs it.
    body: dict[str, Any] = {
        "event_name": truncate(name.strip()),
        "created_at": to_unix_seconds(event.timestamp),
    }
    if event.user_id is not None:
        body["user_id"] = event.user_id
    else:
        body["email"] = email
    metadata, dropped = _metadata(properties)
    if metadata:
        body["metadata"] = metadata
    contact = ContactRef(external_id=event.user_id, email=email)
    step = CreateDataEvent(
        contact=contact,
        body=body,
        create_missing_contact=options.create_missing_contacts,
        dropped_metadata_keys=dropped,
    )
    return Plan(steps=(step,))


def metadata_of(properties: JsonObject) -> dict[str, Any]:
    """At most ten metadata values: the money value first (`price`), then properties in the event's order
    (nested objects flattened with `_`, arrays and nulls dropped, booleans as strings)."""
    return _metadata(properties)[0]


def _metadata(properties: JsonObject) -> tuple[dict[str, Any], int]:
    """The metadata, and how many values did not fit in Intercom's ten keys."""
    metadata: dict[str, Any] = {}
    price = _price(properties)
    if price is not None:
        metadata["price"] = price
    dropped = 0
    for key, value in properties.items():
        if key in _NOT_METADATA:
            continue
        if isinstance(value, str | int | float):  # a top-level value, the usual case: no generator for it
            pairs: Iterable[tuple[str, Any]] = ((clean_key(key), value),)
        elif value is None or isinstance(value, list):
            continue
        else:
            pairs = flatten({key: value})
        for name, item in pairs:
            if name in metadata:
                continue
            if len(metadata) >= MAX_METADATA_KEYS:
                dropped += 1
                continue
            metadata[name] = _metadata_value(item)
    return metadata, dropped


def _metadata_value(value: Any) -> Any:
    """Intercom takes strings and numbers in metadata, not booleans: those become "true" / "false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return truncate(value)
    return value


def _price(properties: Mapping[str, Any]) -> dict[str, Any] | None:
    for key in _MONEY_KEYS:
        cents = to_cents(properties.get(key))
        if cents is not None:
            currency = properties.get("currency")
            code = currency.strip().lower() if isinstance(currency, str) and currency.strip() else "usd"
            return {"amount": cents, "currency": code}
    return None
