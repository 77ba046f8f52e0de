"""`event_from_proto`: each invalid input -> InvalidEventError naming the field; valid input -> `Event`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.model.events import Alias, Event, Group, Identify, Page, Screen, Track
from intercom_sidecar.model.from_proto import (
    MAX_ID_CHARS,
    DecodeLimits,
    event_from_bytes,
    event_from_proto,
    struct_to_dict,
)

NOW = 1_700_000_000.0
DAY = 24 * 3600.0
LIMITS = DecodeLimits(max_event_bytes=32 * 1024, max_future_seconds=DAY)
LONG_ID = "x" * (MAX_ID_CHARS + 1)
NAN = float("nan")
INF = float("inf")


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def message(**fields: Any) -> event_pb2.Event:
    """A valid identify message; keyword arguments replace or add fields."""
    values: dict[str, Any] = {"message_id": "m1", "user_id": "u1", "identify": event_pb2.Identify()}
    values.update(fields)
    if any(kind in fields for kind in ("track", "page", "screen", "group", "alias")):
        values.pop("identify", None)
    return event_pb2.Event(**values)


def decode(msg: event_pb2.Event, limits: DecodeLimits = LIMITS) -> Event:
    return event_from_proto(msg, now=NOW, limits=limits)


NOT_FINITE = "numbers must be finite (no NaN or Infinity)"

INVALID: list[tuple[str, Callable[[], event_pb2.Event], str, str]] = [
    ("missing message_id", lambda: message(message_id=""), "message_id", "is required"),
    ("message_id too long", lambda: message(message_id=LONG_ID), "message_id", "is 256 characters; the limit is 255"),
    (
        "neither user_id nor anonymous_id",
        lambda: message(user_id=""),
        "user_id",
        "one of user_id and anonymous_id is required",
    ),
    ("user_id too long", lambda: message(user_id=LONG_ID), "user_id", "is 256 characters; the limit is 255"),
    ("message_id blank", lambda: message(message_id="  "), "message_id", "must not be only whitespace"),
    ("user_id blank", lambda: message(user_id=" \t"), "user_id", "must not be only whitespace"),
    (
        "anonymous_id blank",
        lambda: message(user_id="", anonymous_id=" "),
        "anonymous_id",
        "must not be only whitespace",
    ),
    (
        "anonymous_id too long",
        lambda: message(user_id="", anonymous_id=LONG_ID),
        "anonymous_id",
        "is 256 characters; the limit is 255",
    ),
    (
        "no call set",
        lambda: event_pb2.Event(message_id="m1", user_id="u1"),
        "call",
        "exactly one of identify, track, page, screen, group or alias must be set",
    ),
    ("empty track event", lambda: message(track=event_pb2.Track(event="")), "track.event", "must not be empty"),
    (
        "whitespace track event",
        lambda: message(track=event_pb2.Track(event=" \t\n")),
        "track.event",
        "must not be empty",
    ),
    ("group without group_id", lambda: message(group=event_pb2.Group()), "group.group_id", "is required"),
    (
        "whitespace group_id",
        lambda: message(group=event_pb2.Group(group_id="  ")),
        "group.group_id",
        "is required",
    ),
    (
        "group_id too long",
        lambda: message(group=event_pb2.Group(group_id=LONG_ID)),
        "group.group_id",
        "is 256 characters; the limit is 255",
    ),
    ("alias without previous_id", lambda: message(alias=event_pb2.Alias()), "alias.previous_id", "is required"),
    (
        "previous_id too long",
        lambda: message(alias=event_pb2.Alias(previous_id=LONG_ID)),
        "alias.previous_id",
        "is 256 characters; the limit is 255",
    ),
    (
        "timestamp before 1970",
        lambda: message(timestamp=ts(-1)),
        "timestamp",
        "is before 1970-01-01T00:00:00Z (-1 s)",
    ),
    (
        "timestamp a nanosecond before 1970",
        lambda: message(timestamp=ts(-1, 999_999_999)),
        "timestamp",
        "is before 1970-01-01T00:00:00Z (-1 s)",
    ),
    (
        "timestamp too far in the future",
        lambda: message(timestamp=ts(int(NOW + DAY) + 1)),
        "timestamp",
        f"is too far in the future ({int(NOW + DAY) + 1} s since the epoch; the limit is 86400 s ahead, "
        "INTERCOM_SIDECAR_MAX_FUTURE_SECONDS)",
    ),
    (
        "timestamp nanos negative",
        lambda: message(timestamp=ts(1, -1)),
        "timestamp",
        "nanos must be in [0, 999999999], got -1",
    ),
    (
        "timestamp nanos a full second",
        lambda: message(timestamp=ts(1, 1_000_000_000)),
        "timestamp",
        "nanos must be in [0, 999999999], got 1000000000",
    ),
    (
        "sent_at before 1970",
        lambda: message(sent_at=ts(-86400)),
        "sent_at",
        "is before 1970-01-01T00:00:00Z (-86400 s)",
    ),
    (
        "sent_at too far in the future",
        lambda: message(sent_at=ts(int(NOW + 2 * DAY))),
        "sent_at",
        f"is too far in the future ({int(NOW + 2 * DAY)} s since the epoch; the limit is 86400 s ahead, "
        "INTERCOM_SIDECAR_MAX_FUTURE_SECONDS)",
    ),
    ("sent_at bad nanos", lambda: message(sent_at=ts(1, -5)), "sent_at", "nanos must be in [0, 999999999], got -5"),
    (
        "NaN in identify.traits",
        lambda: message(identify=event_pb2.Identify(traits=struct({"score": NAN}))),
        "identify.traits.score",
        NOT_FINITE,
    ),
    (
        "Infinity in track.properties",
        lambda: message(track=event_pb2.Track(event="Bought", properties=struct({"revenue": INF}))),
        "track.properties.revenue",
        NOT_FINITE,
    ),
    (
        "NaN nested in a list in context",
        lambda: message(context=struct({"page": {"values": [1, NAN]}})),
        "context.page.values[1]",
        NOT_FINITE,
    ),
    ("-Infinity in integrations", lambda: message(integrations=struct({"x": -INF})), "integrations.x", NOT_FINITE),
    (
        "NaN in page.properties",
        lambda: message(page=event_pb2.Page(properties=struct({"n": NAN}))),
        "page.properties.n",
        NOT_FINITE,
    ),
    (
        "NaN in screen.properties",
        lambda: message(screen=event_pb2.Screen(properties=struct({"n": NAN}))),
        "screen.properties.n",
        NOT_FINITE,
    ),
    (
        "NaN in group.traits",
        lambda: message(group=event_pb2.Group(group_id="g1", traits=struct({"n": NAN}))),
        "group.traits.n",
        NOT_FINITE,
    ),
]


@pytest.mark.parametrize(("build", "field", "problem"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_input_names_the_field(build: Callable[[], event_pb2.Event], field: str, problem: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode(build())
    assert (caught.value.field, caught.value.problem) == (field, problem)
    assert str(caught.value) == f"{field}: {problem}"


def test_oversized_event_is_invalid_and_the_limit_is_inclusive() -> None:
    """Checked on the event's bytes, where they are (gRPC, the spool), not by measuring a parsed message again."""
    raw = message(identify=event_pb2.Identify(traits=struct({"bio": "x" * 500}))).SerializeToString()
    size = len(raw)

    event_from_bytes(raw, now=NOW, limits=DecodeLimits(max_event_bytes=size, max_future_seconds=DAY))  # at the limit
    with pytest.raises(InvalidEventError) as caught:
        event_from_bytes(raw, now=NOW, limits=DecodeLimits(max_event_bytes=size - 1, max_future_seconds=DAY))

    assert caught.value.field == "event"
    assert caught.value.problem == f"is {size} bytes; the limit is {size - 1} bytes (INTERCOM_SIDECAR_MAX_EVENT_BYTES)"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message_id", "m" * MAX_ID_CHARS),
        ("user_id", "u" * MAX_ID_CHARS),
        ("anonymous_id", "a" * MAX_ID_CHARS),
    ],
)
def test_ids_at_the_length_limit_are_accepted(field: str, value: str) -> None:
    event = decode(message(**{field: value}))
    assert getattr(event, field) == value


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (ts(0), 0.0),
        (ts(1_600_000_000, 250_000_000), 1_600_000_000.25),
        (ts(int(NOW + DAY)), NOW + DAY),  # exactly the allowed skew
    ],
    ids=["epoch", "with nanos", "at the future limit"],
)
def test_timestamp_is_unix_seconds(timestamp: timestamp_pb2.Timestamp, expected: float) -> None:
    no_past_limit = DecodeLimits(max_future_seconds=DAY, max_past_seconds=0)
    assert decode(message(timestamp=timestamp), no_past_limit).timestamp == expected


def test_missing_timestamp_defaults_to_now_and_sent_at_to_none() -> None:
    event = decode(message())
    assert event.timestamp == NOW
    assert event.sent_at is None


def test_sent_at_is_kept() -> None:
    assert decode(message(sent_at=ts(1_600_000_000, 500_000_000))).sent_at == 1_600_000_000.5


def test_common_fields() -> None:
    event = decode(
        message(
            message_id="m-42",
            user_id="u-1",
            anonymous_id="anon-1",
            timestamp=ts(1_600_000_000),
            context=struct({"ip": "10.0.0.1", "active": False}),
            integrations=struct({"All": False, "Intercom": True}),
            identify=event_pb2.Identify(traits=struct({"email": "ada@example.com"})),
        )
    )
    assert event == Event(
        message_id="m-42",
        user_id="u-1",
        anonymous_id="anon-1",
        timestamp=1_600_000_000.0,
        sent_at=None,
        call=Identify(traits={"email": "ada@example.com"}),
        context={"ip": "10.0.0.1", "active": False},
        integrations={"All": False, "Intercom": True},
    )
    assert event.type == "identify"
    assert event.user_key == "u-1"


def test_anonymous_only_event() -> None:
    event = decode(message(user_id="", anonymous_id="anon-1"))
    assert (event.user_id, event.anonymous_id, event.user_key) == (None, "anon-1", "anon-1")


def test_unset_structs_are_empty_dicts() -> None:
    event = decode(message())
    assert (event.context, event.integrations, event.call) == ({}, {}, Identify(traits={}))


CALLS: list[tuple[str, event_pb2.Event, Any, str]] = [
    (
        "track",
        message(track=event_pb2.Track(event="Order Completed", properties=struct({"revenue": 19.99}))),
        Track(event="Order Completed", properties={"revenue": 19.99}),
        "track",
    ),
    (
        "page",
        message(page=event_pb2.Page(name="Pricing", category="Docs", properties=struct({"path": "/pricing"}))),
        Page(name="Pricing", category="Docs", properties={"path": "/pricing"}),
        "page",
    ),
    (
        "screen",
        message(screen=event_pb2.Screen(name="Home", category="Main")),
        Screen(name="Home", category="Main", properties={}),
        "screen",
    ),
    (
        "group",
        message(group=event_pb2.Group(group_id="g1", traits=struct({"name": "Acme"}))),
        Group(group_id="g1", traits={"name": "Acme"}),
        "group",
    ),
    ("alias", message(alias=event_pb2.Alias(previous_id="old-1")), Alias(previous_id="old-1"), "alias"),
]


@pytest.mark.parametrize(("msg", "call", "kind"), [case[1:] for case in CALLS], ids=[c[0] for c in CALLS])
def test_each_call_type(msg: event_pb2.Event, call: Any, kind: str) -> None:
    event = decode(msg)
    assert event.call == call
    assert event.type == kind


STRUCTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("string", {"s": "text"}, {"s": "text"}),
    ("whole number is an int", {"n": 3}, {"n": 3}),
    ("whole float is an int", {"n": 3.0}, {"n": 3}),
    ("negative whole number", {"n": -7}, {"n": -7}),
    ("fraction stays a float", {"n": 1.5}, {"n": 1.5}),
    ("2**53 is an int", {"n": 2.0**53}, {"n": 2**53}),
    ("beyond 2**53 stays a float", {"n": 2.0**53 + 2}, {"n": 2.0**53 + 2}),
    ("bools are not numbers", {"t": True, "f": False}, {"t": True, "f": False}),
    ("null", {"x": None}, {"x": None}),
    ("nested objects", {"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 1}}}),
    ("empty object", {"a": {}}, {"a": {}}),
    ("lists", {"l": [1, 2.5, "x", None, True, {"k": 1}, [2]]}, {"l": [1, 2.5, "x", None, True, {"k": 1}, [2]]}),
    ("empty list", {"l": []}, {"l": []}),
]


@pytest.mark.parametrize(("values", "expected"), [case[1:] for case in STRUCTS], ids=[c[0] for c in STRUCTS])
def test_struct_to_dict(values: dict[str, Any], expected: dict[str, Any]) -> None:
    result = struct_to_dict(struct(values))
    assert result == expected
    assert _types(result) == _types(expected)


def test_struct_value_with_no_kind_set_is_none() -> None:
    message = struct_pb2.Struct()
    message.fields["unset"].CopyFrom(struct_pb2.Value())
    assert struct_to_dict(message) == {"unset": None}


def test_struct_to_dict_raises_value_error_for_nan() -> None:
    with pytest.raises(ValueError, match=r"^a\[0\]\.b: numbers must be finite \(no NaN or Infinity\)$"):
        struct_to_dict(struct({"a": [{"b": NAN}]}))


def _types(value: Any) -> Any:
    """The value's shape with each leaf replaced by its type, so 3 and 3.0 compare different."""
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value)
