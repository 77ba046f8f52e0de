"""Intercom API calls per event, on a realistic mix, cold and warm.

Intercom's budget (about 10,000 calls a minute per app, shared by every replica) is spent per call, so calls per
event is what users feel. Each event is mapped and carried out by the real `IntercomSender` against the fake
Intercom on loopback, one at a time, counting the HTTP requests each one makes. Deterministic for a seed: one run.

The mix, over `users` users and three hours of traffic: 20% identify (4 in 5 repeat the user's unchanged traits,
1 in 5 change a trait), 65% track, 5% group, 5% page, 5% identify with a company. The cold pass is the first hour
from empty caches; the warm pass is the third hour after the first two warmed the caches (every user's contact id,
the companies and most attachments known), so it shows the steady state. A separate cold pass sends, per user, one
identify and then one track. Calls made once per app (listing and creating custom data attributes) are counted.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from intercom_sidecar.config import IntercomConfig, MappingConfig, Secret
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.intercom.client import IntercomClient, IntercomResponse
from intercom_sidecar.intercom.sender import IntercomSender
from intercom_sidecar.mapping import Plan, map_event
from intercom_sidecar.model.events import Event, Group, Identify, Page, Track

__all__ = ["CallsSettings", "format_calls", "measure_calls"]

_START = 1_790_000_000.0
_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class CallsSettings:
    users: int = 1_000
    events_per_hour: int = 10_000
    seed: int = 7


class _CountingClient(IntercomClient):
    """Counts the requests made while one event is carried out."""

    calls = 0

    async def request(self, method: str, path: str, **kwargs: Any) -> IntercomResponse:
        self.calls += 1
        return await super().request(method, path, **kwargs)


def measure_calls(settings: CallsSettings = CallsSettings()) -> dict[str, Any]:
    return asyncio.run(_measure(settings))


async def _measure(settings: CallsSettings) -> dict[str, Any]:
    rng = random.Random(settings.seed)
    mixed = _mixed_events(settings, rng)
    first, third = _START + _HOUR, _START + 2 * _HOUR
    cold = [event for event in mixed if event.timestamp < first]
    warm = [event for event in mixed if event.timestamp >= third]
    warm_up = [event for event in mixed if event.timestamp < third]
    return {
        "identify_then_track_cold": await _replay(_identify_then_track(settings)),
        "identify_then_track_cold_app_ready": await _replay(_identify_then_track(settings), attributes_exist=True),
        "mix_cold_hour": await _replay(cold),
        "mix_warm_hour": await _replay(warm_up, then=warm),
    }


async def _replay(
    events: list[Event], then: list[Event] | None = None, *, attributes_exist: bool = False
) -> dict[str, Any]:
    """Calls per event type over `then` (after `events` warmed the caches), or over `events` from cold.

    `attributes_exist`: the Intercom app already has the custom attributes the traits use (set up once per app).
    """
    async with FakeIntercom(limit_per_window=10**9) as fake:
        if attributes_exist:
            fake.add_data_attribute("plan", "contact", "string")
            fake.add_data_attribute("logins", "contact", "integer")
        config = IntercomConfig(token=Secret(fake.token), base_url=fake.url)
        client = _CountingClient(config)
        sender = IntercomSender(client, config, clock=lambda: _START + 3 * _HOUR)
        await sender.prefetch()  # what the sidecar does at start, not a cost of any event
        try:
            counted: dict[str, list[int]] = {}
            for phase, batch in (("warm-up", events if then else []), ("measured", then or events)):
                for event in batch:
                    kind = _kind(event)
                    client.calls = 0
                    plan = map_event(event, MappingConfig())
                    if isinstance(plan, Plan):
                        await sender.send(plan)
                    if phase == "measured":
                        counted.setdefault(kind, []).append(client.calls)
        finally:
            await client.aclose()
    by_type = {kind: {"events": len(calls), "calls": sum(calls)} for kind, calls in sorted(counted.items())}
    total_events = sum(row["events"] for row in by_type.values())
    total_calls = sum(row["calls"] for row in by_type.values())
    return {
        "by_type": by_type,
        "events": total_events,
        "calls": total_calls,
        "calls_per_event": total_calls / total_events,
    }


def _kind(event: Event) -> str:
    call = event.call
    if isinstance(call, Identify) and "company" in call.traits:
        return "identify+company"
    return event.type


def _traits(user: int, version: int) -> dict[str, Any]:
    return {"email": f"user{user}@example.com", "name": f"User {user}", "plan": "pro", "logins": version}


def _identify_then_track(settings: CallsSettings) -> list[Event]:
    events = []
    for user in range(settings.users):
        at = _START + user
        events.append(_event(f"it-{user}-i", user, at, Identify(traits=_traits(user, 0))))
        events.append(_event(f"it-{user}-t", user, at + 0.5, Track(event="Signed In", properties={"via": "web"})))
    return events


def _mixed_events(settings: CallsSettings, rng: random.Random) -> list[Event]:
    versions: Counter[int] = Counter()
    events = []
    total = 3 * settings.events_per_hour
    for n in range(total):
        user = rng.randrange(settings.users)
        at = _START + 3 * _HOUR * n / total
        roll = rng.random()
        if roll < 0.20:
            if rng.random() < 0.2:
                versions[user] += 1
            call: Any = Identify(traits=_traits(user, versions[user]))
        elif roll < 0.85:
            call = Track(event=rng.choice(["Viewed Item", "Added To Cart", "Order Completed"]), properties={"n": n})
        elif roll < 0.90:
            call = Group(group_id=f"company-{user % 50}", traits={"name": f"Company {user % 50}", "plan": "team"})
        elif roll < 0.95:
            call = Page(name="Pricing", category="", properties={})
        else:
            company = {"id": f"company-{user % 50}", "name": f"Company {user % 50}"}
            call = Identify(traits={**_traits(user, versions[user]), "company": company})
        events.append(_event(f"mix-{n}", user, at, call))
    return events


def _event(message_id: str, user: int, at: float, call: Any) -> Event:
    return Event(
        message_id=message_id,
        user_id=f"user-{user}",
        anonymous_id=None,
        timestamp=at,
        call=call,
        context={},
        integrations={},
    )


def format_calls(number: int, results: dict[str, Any], settings: CallsSettings) -> str:
    titles = {
        "identify_then_track_cold": f"cold: one identify then one track per user ({settings.users:,} users)",
        "identify_then_track_cold_app_ready": "same, the app already has its custom attributes (created once per app)",
        "mix_cold_hour": f"mix, cold caches (first hour, {settings.events_per_hour:,} events)",
        "mix_warm_hour": "mix, warm caches (third hour, after the first two)",
    }
    lines = [
        f"{number}. Intercom calls per event (page mode ignore; deterministic, seed {settings.seed}; targets: "
        "warm mix <= 0.8, cold identify+track <= 1.0)"
    ]
    for key, title in titles.items():
        result = results[key]
        lines.append(
            f"   {title}: {result['calls_per_event']:.3f} calls/event ({result['calls']:,} / {result['events']:,})"
        )
        for kind, row in result["by_type"].items():
            per = row["calls"] / row["events"] if row["events"] else 0.0
            lines.append(f"      {kind:<18} {per:6.3f}  ({row['calls']:,} calls / {row['events']:,} events)")
    return "\n".join(lines)
