"""alias -> MergeLead when leads are on: a table of (id, event, options, expected Plan or Skip)."""

from __future__ import annotations

import pytest

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping import ContactRef, MergeLead, Plan, Skip, map_event
from intercom_sidecar.model.events import Alias, Event, JsonObject

LEADS = MappingConfig(leads=True)
LEADS_OFF = Skip("alias: not sent (leads are disabled, so there is no lead to merge)")


def alias(
    previous_id: str = "anon-1",
    *,
    user_id: str | None = "u1",
    anonymous_id: str | None = None,
    integrations: JsonObject | None = None,
) -> Event:
    return Event(
        message_id="m1",
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=1_700_000_000.0,
        call=Alias(previous_id=previous_id),
        context={},
        integrations=integrations or {},
    )


def merge(lead: str = "anon-1", user: str = "u1") -> Plan:
    return Plan(
        steps=(
            MergeLead(
                lead=ContactRef(external_id=lead, email=None, role="lead"),
                user=ContactRef(external_id=user, email=None),
            ),
        )
    )


CASES: list[tuple[str, Event, MappingConfig, Plan | Skip]] = [
    ("leads off (the default): Skip", alias(), MappingConfig(), LEADS_OFF),
    ("leads on: merge the lead named by previousId into the user", alias(), LEADS, merge()),
    ("leads on: anonymousId on the alias does not matter", alias(anonymous_id="anon-2"), LEADS, merge()),
    ("leads on: a previousId that looks like a user id", alias("u0", user_id="u1"), LEADS, merge("u0", "u1")),
    (
        "leads on: no userId to merge into",
        alias(user_id=None, anonymous_id="anon-2"),
        LEADS,
        Skip("alias: no userId to merge the lead into"),
    ),
    ("leads off: no userId either", alias(user_id=None, anonymous_id="anon-2"), MappingConfig(), LEADS_OFF),
    (
        "integrations.Intercom false wins over leads",
        alias(integrations={"Intercom": False}),
        LEADS,
        Skip("integrations.Intercom is false"),
    ),
]


@pytest.mark.parametrize(
    ("event", "options", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_alias(event: Event, options: MappingConfig, expected: Plan | Skip) -> None:
    assert map_event(event, options) == expected
