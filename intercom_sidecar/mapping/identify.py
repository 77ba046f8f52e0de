"""identify -> create or update an Intercom contact (role user, or a lead keyed by anonymousId), and its companies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping.company import company_changes
from intercom_sidecar.mapping.fields import custom_attributes, to_unix_seconds, truncate, unix_time
from intercom_sidecar.mapping.plan import AttachCompany, ContactRef, DetachCompany, Plan, Skip, Step, UpsertContact
from intercom_sidecar.model.events import Event, Identify, JsonObject

__all__ = ["contact_email", "is_active", "map_identify"]

# Traits that map to standard contact fields, or that are not contact attributes at all
# (companies have their own mapping; ids are already the contact's identity).
_NOT_CUSTOM = frozenset(
    {"email", "phone", "name", "firstName", "lastName", "first_name", "last_name", "avatar", "createdAt",
     "created_at", "id", "userId", "user_id", "company", "companies"}
)  # fmt: skip


def map_identify(event: Event, call: Identify, options: MappingConfig) -> Plan | Skip:
    traits = call.traits
    email = contact_email(traits, event.context)
    if event.user_id is not None or email is not None:
        contact = ContactRef(external_id=event.user_id, email=email)
    elif options.leads and event.anonymous_id is not None:
        contact = ContactRef(external_id=event.anonymous_id, email=None, role="lead")
    else:
        return Skip("identify: no userId or email; anonymous identifies are not sent (leads are disabled)")
    body: dict[str, Any] = contact.identity
    body.update(_standard_fields(event, traits))
    custom, types = custom_attributes({key: value for key, value in traits.items() if key not in _NOT_CUSTOM})
    if custom:
        body["custom_attributes"] = custom
    steps: list[Step] = [UpsertContact(contact=contact, body=body, attribute_types=types)]
    for change in company_changes(traits, active=is_active(event)):
        if change.remove:
            steps.append(DetachCompany(contact=contact, company_id=change.company_id))
        elif change.upsert is not None:
            steps += [change.upsert, AttachCompany(contact=contact, company_id=change.company_id)]
    return Plan(steps=tuple(steps))


def contact_email(traits: JsonObject, context: JsonObject) -> str | None:
    """`traits.email`, else `context.traits.email`; None when neither is a non-empty string."""
    for source in (traits, _object(context.get("traits"))):
        email = source.get("email")
        if isinstance(email, str) and email.strip():
            return email.strip()
    return None


def is_active(event: Event) -> bool:
    """False when the caller says the user is not active (`context.active: false`): last seen is left alone."""
    return event.context.get("active") is not False


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
    signed_up_at = unix_time(traits.get("createdAt", traits.get("created_at")))
    if signed_up_at is not None:
        fields["signed_up_at"] = signed_up_at
    if is_active(event):
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


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
