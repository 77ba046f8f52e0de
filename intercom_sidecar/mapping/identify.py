"""identify -> create or update an Intercom contact (role user)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intercom_sidecar.mapping.fields import (
    data_type_of,
    flatten,
    parse_iso_datetime,
    to_unix_seconds,
    truncate,
)
from intercom_sidecar.mapping.plan import ContactRef, Plan, Skip, UpsertContact
from intercom_sidecar.model.events import Event, Identify, JsonObject

__all__ = ["contact_email", "map_identify"]

# Traits that map to standard contact fields, or that are not contact attributes at all
# (companies belong to the company mapping; ids are already the contact's identity).
_NOT_CUSTOM = frozenset(
    {
        "email",
        "phone",
        "name",
        "firstName",
        "lastName",
        "first_name",
        "last_name",
        "avatar",
        "createdAt",
        "created_at",
        "id",
        "userId",
        "user_id",
        "company",
        "companies",
    }
)
_MILLISECONDS_THRESHOLD = 100_000_000_000  # a Unix time above this is in milliseconds (after 5138 AD in seconds)


def map_identify(event: Event, call: Identify) -> Plan | Skip:
    traits = call.traits
    email = contact_email(traits, event.context)
    if event.user_id is None and email is None:
        return Skip("identify: no userId or email; anonymous identifies are not sent to Intercom")
    contact = ContactRef(external_id=event.user_id, email=email)
    body: dict[str, Any] = {"role": "user"}
    if event.user_id is not None:
        body["external_id"] = event.user_id
    if email is not None:
        body["email"] = email
    body.update(_standard_fields(event, traits))
    custom, types = _custom_attributes(traits)
    if custom:
        body["custom_attributes"] = custom
    return Plan(steps=(UpsertContact(contact=contact, body=body, attribute_types=types),))


def contact_email(traits: JsonObject, context: JsonObject) -> str | None:
    """`traits.email`, else `context.traits.email`; None when neither is a non-empty string."""
    for source in (traits, _object(context.get("traits"))):
        email = source.get("email")
        if isinstance(email, str) and email.strip():
            return email.strip()
    return None


def _standard_fields(event: Event, traits: JsonObject) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    name = _name(traits)
    if name:
        fields["name"] = truncate(name)
    phone = traits.get("phone")
    if isinstance(phone, str | int) and not isinstance(phone, bool) and str(phone).strip():
        fields["phone"] = str(phone).strip()
    avatar = traits.get("avatar")
    if isinstance(avatar, str) and avatar.strip():
        fields["avatar"] = avatar.strip()
    signed_up_at = _unix_time(traits.get("createdAt", traits.get("created_at")))
    if signed_up_at is not None:
        fields["signed_up_at"] = signed_up_at
    if event.context.get("active") is not False:
        fields["last_seen_at"] = to_unix_seconds(event.timestamp)
    unsubscribed = _object(event.context.get("Intercom")).get("unsubscribedFromEmails")
    if isinstance(unsubscribed, bool):
        fields["unsubscribed_from_emails"] = unsubscribed
    return fields


def _name(traits: JsonObject) -> str | None:
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    first = traits.get("firstName", traits.get("first_name"))
    last = traits.get("lastName", traits.get("last_name"))
    parts = [part.strip() for part in (first, last) if isinstance(part, str) and part.strip()]
    return " ".join(parts) or None


def _unix_time(value: Any) -> int | None:
    if isinstance(value, str):
        return parse_iso_datetime(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value / 1000) if value >= _MILLISECONDS_THRESHOLD else int(value)
    return None


def _custom_attributes(traits: JsonObject) -> tuple[dict[str, Any], dict[str, str]]:
    """Custom attribute values and their Intercom data_types. ISO date strings become Unix seconds, typed `date`."""
    custom: dict[str, Any] = {}
    types: dict[str, str] = {}
    for name, value in flatten({key: value for key, value in traits.items() if key not in _NOT_CUSTOM}):
        data_type = data_type_of(value)
        if isinstance(value, str):
            as_time = parse_iso_datetime(value)
            if as_time is not None:
                value, data_type = as_time, "date"
            else:
                value = truncate(value)
        custom[name] = value
        types[name] = data_type
    return custom, types


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
