"""page and screen -> nothing (the default), a data event `Viewed <name> Page|Screen`, or a last-seen update."""

from __future__ import annotations

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping.fields import to_unix_seconds
from intercom_sidecar.mapping.identify import contact_email, is_active
from intercom_sidecar.mapping.plan import ContactRef, Plan, Skip, UpsertContact
from intercom_sidecar.mapping.track import data_event
from intercom_sidecar.model.events import Event, Page, Screen

__all__ = ["map_page"]


def map_page(event: Event, call: Page | Screen, options: MappingConfig) -> Plan | Skip:
    kind = "Page" if isinstance(call, Page) else "Screen"
    if options.page_mode == "event":
        name = call.name.strip() or call.category.strip()
        return data_event(event, f"Viewed {name} {kind}" if name else f"Viewed {kind}", call.properties, options)
    if options.page_mode == "last_seen":
        return _last_seen(event, call)
    return Skip(f"{event.type}: not sent to Intercom (INTERCOM_SIDECAR_PAGE_MODE is ignore)")


def _last_seen(event: Event, call: Page | Screen) -> Plan | Skip:
    if not is_active(event):
        return Skip(f"{event.type}: context.active is false, so last seen is left alone")
    email = contact_email(call.properties, event.context)
    if event.user_id is None and email is None:
        return Skip(f"{event.type}: no userId or email; anonymous views are not sent to Intercom")
    contact = ContactRef(external_id=event.user_id, email=email)
    body = {**contact.identity, "last_seen_at": to_unix_seconds(event.timestamp)}
    return Plan(steps=(UpsertContact(contact=contact, body=body, attribute_types={}),))
