"""Selective destinations (`integrations`) and the call types that are not sent to Intercom."""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.mapping import Plan, Skip, map_event
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


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (Page(name="Home", category="", properties={}), "page"),
        (Screen(name="Home", category="", properties={}), "screen"),
        (Group(group_id="g1", traits={"name": "Acme"}), "group"),
        (Alias(previous_id="old"), "alias"),
    ],
    ids=["page", "screen", "group", "alias"],
)
def test_unsupported_calls_are_skipped(call: Call, expected: str) -> None:
    assert map_event(event(call)) == Skip(
        f"{expected}: not sent to Intercom by this version of the sidecar (identify and track are)"
    )


@pytest.mark.parametrize(
    "call",
    [Identify(traits={}), Track(event="Signed Up", properties={}), Page(name="", category="", properties={})],
    ids=["identify", "track", "page"],
)
def test_integrations_filter_comes_before_mapping(call: Call) -> None:
    assert map_event(event(call, {"Intercom": False})) == Skip("integrations.Intercom is false")
    assert map_event(event(call, {"All": False})) == Skip(ALL_OFF)


@pytest.mark.parametrize(
    "call", [Identify(traits={}), Track(event="Signed Up", properties={})], ids=["identify", "track"]
)
def test_enabled_events_are_planned(call: Call) -> None:
    assert isinstance(map_event(event(call, {"All": False, "Intercom": {"user_hash": "h"}})), Plan)
