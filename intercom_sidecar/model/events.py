"""Segment-spec events as frozen values. JSON-like payloads (traits, properties, context) are plain dicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Alias",
    "Call",
    "Event",
    "Group",
    "Identify",
    "JsonObject",
    "Page",
    "Screen",
    "Track",
]

JsonObject = Mapping[str, Any]
"""A decoded JSON object: str keys; values are str, int, float, bool, None, lists and nested objects."""


@dataclass(frozen=True, slots=True)
class Identify:
    traits: JsonObject


@dataclass(frozen=True, slots=True)
class Track:
    event: str
    properties: JsonObject


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    category: str
    properties: JsonObject


@dataclass(frozen=True, slots=True)
class Screen:
    name: str
    category: str
    properties: JsonObject


@dataclass(frozen=True, slots=True)
class Group:
    group_id: str
    traits: JsonObject


@dataclass(frozen=True, slots=True)
class Alias:
    previous_id: str


Call = Identify | Track | Page | Screen | Group | Alias

_CALL_TYPES: Mapping[type, str] = {
    Identify: "identify",
    Track: "track",
    Page: "page",
    Screen: "screen",
    Group: "group",
    Alias: "alias",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One validated Segment call. `timestamp` and `sent_at` are Unix seconds (UTC)."""

    message_id: str
    user_id: str | None
    anonymous_id: str | None
    timestamp: float
    call: Call
    context: JsonObject
    integrations: JsonObject
    sent_at: float | None = None

    @property
    def type(self) -> str:
        """Segment's call type: identify, track, page, screen, group or alias."""
        return _CALL_TYPES[type(self.call)]

    @property
    def user_key(self) -> str:
        """Whose event this is, for per-user ordering: the user id, else the anonymous id."""
        return self.user_id or self.anonymous_id or ""
