"""Pure mapping: a Segment event in, a `Plan` of Intercom operations (or a `Skip`) out. No I/O here."""

from __future__ import annotations

from intercom_sidecar.mapping.destinations import filter_reason
from intercom_sidecar.mapping.identify import map_identify
from intercom_sidecar.mapping.plan import ContactRef, CreateDataEvent, Plan, Skip, Step, UpsertContact
from intercom_sidecar.mapping.track import map_track
from intercom_sidecar.model.events import Event, Identify, Track

__all__ = ["ContactRef", "CreateDataEvent", "Plan", "Skip", "Step", "UpsertContact", "map_event"]


def map_event(event: Event) -> Plan | Skip:
    """The Intercom operations for `event`, or the reason it is not sent."""
    reason = filter_reason(event.integrations)
    if reason is not None:
        return Skip(reason)
    call = event.call
    if isinstance(call, Identify):
        return map_identify(event, call)
    if isinstance(call, Track):
        return map_track(event, call)
    return Skip(f"{event.type}: not sent to Intercom by this version of the sidecar (identify and track are)")
