"""alias -> merge the lead known by `previous_id` (an anonymousId) into the user `user_id`, when leads are on."""

from __future__ import annotations

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping.plan import ContactRef, MergeLead, Plan, Skip
from intercom_sidecar.model.events import Alias, Event

__all__ = ["map_alias"]


def map_alias(event: Event, call: Alias, options: MappingConfig) -> Plan | Skip:
    if not options.leads:
        return Skip("alias: not sent (leads are disabled, so there is no lead to merge)")
    if event.user_id is None:
        return Skip("alias: no userId to merge the lead into")
    lead = ContactRef(external_id=call.previous_id, email=None, role="lead")
    user = ContactRef(external_id=event.user_id, email=None)
    return Plan(steps=(MergeLead(lead=lead, user=user),))
