"""Pure mapping: a Segment event in, a `Plan` of Intercom operations (or a `Skip`) out. No I/O here."""

from __future__ import annotations

from intercom_sidecar.config import PAGE_MODES, MappingConfig
from intercom_sidecar.mapping.alias import map_alias
from intercom_sidecar.mapping.destinations import filter_reason
from intercom_sidecar.mapping.group import map_group
from intercom_sidecar.mapping.identify import map_identify
from intercom_sidecar.mapping.page import map_page
from intercom_sidecar.mapping.plan import (
    AttachCompany,
    ContactRef,
    CreateDataEvent,
    DetachCompany,
    MergeLead,
    Plan,
    Skip,
    Step,
    UpsertCompany,
    UpsertContact,
)
from intercom_sidecar.mapping.track import map_track
from intercom_sidecar.mapping.verification import check_user_hash
from intercom_sidecar.model.events import Alias, Event, Group, Identify, Page, Screen, Track

__all__ = [
    "PAGE_MODES",
    "AttachCompany",
    "ContactRef",
    "CreateDataEvent",
    "DetachCompany",
    "MappingConfig",
    "MergeLead",
    "Plan",
    "Skip",
    "Step",
    "UpsertCompany",
    "UpsertContact",
    "map_event",
]

_DEFAULT_OPTIONS = MappingConfig()


def map_event(event: Event, options: MappingConfig = _DEFAULT_OPTIONS) -> Plan | Skip:
    """The Intercom operations for `event`, or the reason it is not sent.

    Raises InvalidEventError when identity verification is on and the event's user_hash does not match.
    """
    reason = filter_reason(event.integrations)
    if reason is not None:
        return Skip(reason)
    if options.identity_secret is not None:
        check_user_hash(event, options.identity_secret)
    call = event.call
    if isinstance(call, Identify):
        return map_identify(event, call, options)
    if isinstance(call, Track):
        return map_track(event, call, options)
    if isinstance(call, Page | Screen):
        return map_page(event, call, options)
    if isinstance(call, Group):
        return map_group(event, call)
    if isinstance(call, Alias):
        return map_alias(event, call, options)
    raise AssertionError(f"unknown call {call!r}")
