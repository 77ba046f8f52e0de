"""Selective destinations (`integrations`), applied to every call type before it is mapped."""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping import AttachCompany, ContactRef, Plan, Skip, UpsertCompany, map_event
from intercom_sidecar.mapping.destinations import filter_reason
from intercom_sidecar.model.events import Alias, Call, Event, Group, Identify, JsonObject, Page, Screen, Track

ALL_OFF = "integrations.All is false and integrations.Intercom is not enabled"


@pytest.mark.parametrize(
    ("integrations", "reason"),
    [
        ({}, None),
        ({"Intercom": True}, None),
        ({"Intercom": {}}, None),
        ({"Intercom": {"user_hash": "abc123"}}, None),
        ({"Intercom": False}, "integrations.Intercom is false"),
        ({"All": False}, ALL_OFF),
        ({"All": True}, None),
        ({"All": False, "Intercom": True}, None),
        ({"All": False, "Intercom": {"user_hash": "abc123"}}, None),
        ({"All": True, "Intercom": False}, "integrations.Intercom is false"),
        ({"All": False, "Intercom": False}, "integrations.Intercom is false"),
        ({"Intercom": None}, None),
        ({"All": False, "Intercom": None}, ALL_OFF),
        ({"Intercom": "yes"}, "integrations.Intercom is 'yes', not true or an object"),
        ({"Intercom": 1}, "integrations.Intercom is 1, not true or an object"),
        ({"Intercom": ["x"]}, "integrations.Intercom is ['x'], not true or an object"),
        ({"Mixpanel": False}, None),
    ],
    ids=[
        "absent",
        "Intercom true",
        "Intercom empty object",
        "Intercom object",
        "Intercom false",
        "All false",
        "All true",
        "All false, Intercom true",
        "All false, Intercom object",
        "All true, Intercom false",
        "All false, Intercom false",
        "Intercom null",
        "All false, Intercom null",
        "Intercom string",
        "Intercom number",
        "Intercom list",
        "another destination off",
    ],
)
def test_filter_reason(integrations: dict[str, Any], reason: str | None) -> None:
    assert filter_reason(integrations) == reason


def event(call: Call, integrations: JsonObject | None = None) -> Event:
    return Event(
        message_id="m1",
        user_id="u1",
        anonymous_id=None,
        timestamp=1_700_000_000.0,
        call=call,
        context={},
        integrations=integrations or {},
    )


GROUP_PLAN = Plan(
    steps=(
        UpsertCompany(
            company_id="g1",
            body={"company_id": "g1", "name": "Acme", "update_last_request_at": True},
            attribute_types={},
        ),
        AttachCompany(contact=ContactRef(external_id="u1", email=None), company_id="g1"),
    )
)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            Page(name="Home", category="", properties={}),
            Skip("page: not sent to Intercom (INTERCOM_SIDECAR_PAGE_MODE is ignore)"),
        ),
        (
            Screen(name="Home", category="", properties={}),
            Skip("screen: not sent to Intercom (INTERCOM_SIDECAR_PAGE_MODE is ignore)"),
        ),
        (Group(group_id="g1", traits={"name": "Acme"}), GROUP_PLAN),
        (Alias(previous_id="old"), Skip("alias: not sent (leads are disabled, so there is no lead to merge)")),
    ],
    ids=["page", "screen", "group", "alias"],
)
def test_default_options_for_the_other_calls(call: Call, expected: Plan | Skip) -> None:
    """page/screen are ignored and alias needs leads, by default; group is always mapped."""
    assert map_event(event(call)) == expected


EVERY_CALL = [
    Identify(traits={}),
    Track(event="Signed Up", properties={}),
    Page(name="", category="", properties={}),
    Screen(name="", category="", properties={}),
    Group(group_id="g1", traits={}),
    Alias(previous_id="old"),
]
EVERY_CALL_IDS = ["identify", "track", "page", "screen", "group", "alias"]
EVERYTHING_ON = MappingConfig(page_mode="event", leads=True)


@pytest.mark.parametrize("call", EVERY_CALL, ids=EVERY_CALL_IDS)
def test_integrations_filter_comes_before_mapping(call: Call) -> None:
    assert map_event(event(call, {"Intercom": False}), EVERYTHING_ON) == Skip("integrations.Intercom is false")
    assert map_event(event(call, {"All": False}), EVERYTHING_ON) == Skip(ALL_OFF)


@pytest.mark.parametrize("call", EVERY_CALL, ids=EVERY_CALL_IDS)
def test_enabled_events_are_planned(call: Call) -> None:
    """No identity secret is configured: the user_hash is not checked."""
    assert isinstance(map_event(event(call, {"All": False, "Intercom": {"user_hash": "h"}}), EVERYTHING_ON), Plan)
