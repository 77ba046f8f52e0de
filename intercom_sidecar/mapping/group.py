"""group -> upsert the company (`group_id` -> `company_id`), then attach the user to it."""

from __future__ import annotations

from intercom_sidecar.mapping.company import company_upsert
from intercom_sidecar.mapping.identify import is_active
from intercom_sidecar.mapping.plan import AttachCompany, ContactRef, Plan, Step
from intercom_sidecar.model.events import Event, Group

__all__ = ["map_group"]


def map_group(event: Event, call: Group) -> Plan:
    """The contact is attached only by user_id (never by the company's own `email` trait); without a user_id
    the company is upserted alone."""
    company_id = call.group_id.strip()
    steps: list[Step] = [company_upsert(company_id, call.traits, active=is_active(event))]
    if event.user_id is not None:
        steps.append(AttachCompany(contact=ContactRef(external_id=event.user_id, email=None), company_id=company_id))
    return Plan(steps=tuple(steps))
