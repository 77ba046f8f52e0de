"""Segment's JSON -> the intercom_sidecar.v1.Event message, for each call type."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.cli.event_input import read_events
from intercom_sidecar.model.events import Alias, Group, Identify, Page, Screen, Track
from intercom_sidecar.model.from_proto import DecodeLimits, event_from_proto
from intercom_sidecar.model.segment_json import SegmentJsonError, event_from_segment_json
from intercom_sidecar.model.strict_json import StrictJsonError, loads

JAN_2024 = 1_704_067_200


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


CALLS: list[tuple[str, dict[str, Any], event_pb2.Event]] = [
    (
        "identify",
        {"type": "identify", "messageId": "m1", "userId": "u1", "traits": {"email": "ada@example.com", "age": 36}},
        event_pb2.Event(
            message_id="m1",
            user_id="u1",
            identify=event_pb2.Identify(traits=struct({"email": "ada@example.com", "age": 36})),
        ),
    ),
    (
        "track",
        {
            "type": "track",
            "messageId": "m2",
            "anonymousId": "a1",
            "event": "Order Completed",
            "properties": {"revenue": 19.99},
        },
        event_pb2.Event(
            message_id="m2",
            anonymous_id="a1",
            track=event_pb2.Track(event="Order Completed", properties=struct({"revenue": 19.99})),
        ),
    ),
    (
        "page",
        {
            "type": "page",
            "messageId": "m3",
            "userId": "u1",
            "name": "Pricing",
            "category": "Docs",
            "properties": {"path": "/p"},
        },
        event_pb2.Event(
            message_id="m3",
            user_id="u1",
            page=event_pb2.Page(name="Pricing", category="Docs", properties=struct({"path": "/p"})),
        ),
    ),
    (
        "screen",
        {"type": "screen", "messageId": "m4", "userId": "u1", "name": "Home"},
        event_pb2.Event(message_id="m4", user_id="u1", screen=event_pb2.Screen(name="Home")),
    ),
    (
        "group",
        {"type": "group", "messageId": "m5", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
        event_pb2.Event(
            message_id="m5", user_id="u1", group=event_pb2.Group(group_id="g1", traits=struct({"name": "Acme"}))
        ),
    ),
    (
        "alias",
        {"type": "alias", "messageId": "m6", "userId": "u1", "previousId": "old"},
        event_pb2.Event(message_id="m6", user_id="u1", alias=event_pb2.Alias(previous_id="old")),
    ),
    (
        "common fields",
        {
            "type": "identify",
            "messageId": "m7",
            "userId": "u1",
            "anonymousId": "a1",
            "timestamp": "2024-01-01T00:00:00.000Z",
            "sentAt": "2024-01-01T00:00:01.5Z",
            "context": {"ip": "10.0.0.1", "traits": {"email": "c@example.com"}},
            "integrations": {"All": False, "Intercom": True},
        },
        event_pb2.Event(
            message_id="m7",
            user_id="u1",
            anonymous_id="a1",
            timestamp=timestamp_pb2.Timestamp(seconds=JAN_2024),
            sent_at=timestamp_pb2.Timestamp(seconds=JAN_2024 + 1, nanos=500_000_000),
            context=struct({"ip": "10.0.0.1", "traits": {"email": "c@example.com"}}),
            integrations=struct({"All": False, "Intercom": True}),
            identify=event_pb2.Identify(),
        ),
    ),
    (
        "numeric ids become strings",
        {"type": "group", "messageId": 9, "userId": 42, "anonymousId": 7, "groupId": 1001},
        event_pb2.Event(message_id="9", user_id="42", anonymous_id="7", group=event_pb2.Group(group_id="1001")),
    ),
    (
        "numeric previousId becomes a string",
        {"type": "alias", "messageId": "m8", "userId": "u1", "previousId": 1234},
        event_pb2.Event(message_id="m8", user_id="u1", alias=event_pb2.Alias(previous_id="1234")),
    ),
    (
        "nulls, non-object context and unknown keys are ignored",
        {
            "type": "track",
            "messageId": "m9",
            "userId": "u1",
            "anonymousId": None,
            "event": "Signed Up",
            "properties": None,
            "context": "not an object",
            "integrations": None,
            "timestamp": None,
            "channel": "server",
            "version": 2,
            "receivedAt": "2024-01-01T00:00:00Z",
        },
        event_pb2.Event(message_id="m9", user_id="u1", track=event_pb2.Track(event="Signed Up")),
    ),
]


@pytest.mark.parametrize(("data", "expected"), [case[1:] for case in CALLS], ids=[case[0] for case in CALLS])
def test_segment_json_to_proto(data: dict[str, Any], expected: event_pb2.Event) -> None:
    assert event_from_segment_json(data) == expected


@pytest.mark.parametrize("message_id", [None, ""], ids=["absent", "empty"])
def test_missing_message_id_is_generated(message_id: str | None) -> None:
    data: dict[str, Any] = {"type": "track", "userId": "u1", "event": "Signed Up"}
    if message_id is not None:
        data["messageId"] = message_id

    first = event_from_segment_json(data)
    second = event_from_segment_json(data)

    assert uuid.UUID(first.message_id).version == 4
    assert first.message_id != second.message_id
    assert "messageId" not in data or data["messageId"] == message_id  # the input is not changed


def test_the_input_is_not_changed() -> None:
    data = {"type": "group", "userId": 42, "groupId": 7, "traits": {"n": 1}}
    snapshot = {**data, "traits": {"n": 1}}
    event_from_segment_json(data)
    assert data == snapshot


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "an event must be a JSON object"),
        ("identify", "an event must be a JSON object"),
        (None, "an event must be a JSON object"),
        ({"userId": "u1"}, "type must be one of identify, track, page, screen, group, alias, got None"),
        ({"type": "Track"}, "type must be one of identify, track, page, screen, group, alias, got 'Track'"),
        ({"type": 3}, "type must be one of identify, track, page, screen, group, alias, got 3"),
    ],
    ids=["list", "string", "null", "no type", "capitalised type", "numeric type"],
)
def test_errors(data: Any, message: str) -> None:
    with pytest.raises(SegmentJsonError) as caught:
        event_from_segment_json(data)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("data", "starts"),
    [
        ({"type": "track", "event": "x", "timestamp": "yesterday"}, "Failed to parse timestamp field"),
        ({"type": "track", "event": "x", "timestamp": "2024-01-01T00:00:00"}, "Failed to parse timestamp field"),
        ({"type": "track", "event": 12}, "Failed to parse event field"),
        ({"type": "track", "event": "x", "properties": [1]}, "Failed to parse properties field"),
        ({"type": "identify", "traits": "tall"}, "Failed to parse traits field"),
    ],
    ids=[
        "timestamp not a date",
        "timestamp without offset",
        "event not a string",
        "properties a list",
        "traits a string",
    ],
)
def test_protobuf_parse_errors_become_segment_json_errors(data: dict[str, Any], starts: str) -> None:
    with pytest.raises(SegmentJsonError) as caught:
        event_from_segment_json({"messageId": "m1", "userId": "u1", **data})
    assert str(caught.value).startswith(starts)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("data", "call"),
    [
        ({"type": "identify", "traits": {"plan": "pro"}}, Identify(traits={"plan": "pro"})),
        ({"type": "track", "event": "Bought", "properties": {"n": 2}}, Track(event="Bought", properties={"n": 2})),
        ({"type": "page", "name": "Home"}, Page(name="Home", category="", properties={})),
        ({"type": "screen", "name": "Home"}, Screen(name="Home", category="", properties={})),
        ({"type": "group", "groupId": 5}, Group(group_id="5", traits={})),
        ({"type": "alias", "previousId": 5}, Alias(previous_id="5")),
    ],
    ids=["identify", "track", "page", "screen", "group", "alias"],
)
def test_round_trip_through_the_server_decoder(data: dict[str, Any], call: Any) -> None:
    message = event_from_segment_json({"messageId": "m1", "userId": 42, "timestamp": "2024-01-01T00:00:00Z", **data})
    event = event_from_proto(
        message, now=JAN_2024 + 60, limits=DecodeLimits(max_event_bytes=32 * 1024, max_future_seconds=86400)
    )
    assert (event.message_id, event.user_id, event.timestamp, event.call) == ("m1", "42", JAN_2024, call)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"type": "track", "type": "identify"}', "duplicate key 'type' in one object"),
        ('{"traits": {"email": "a@x", "email": "b@x"}}', "duplicate key 'email' in one object"),
        ('[{"a": 1}, {"b": [{"c": 1, "c": 2}]}]', "duplicate key 'c' in one object"),
        ('{"properties": {"revenue": NaN}}', "NaN is not a JSON number"),
        ('{"properties": {"revenue": -Infinity}}', "-Infinity is not a JSON number"),
    ],
)
def test_loads_refuses_duplicate_keys_and_non_numbers(text: str, message: str) -> None:
    with pytest.raises(StrictJsonError) as caught:
        loads(text)
    assert str(caught.value) == message


def test_loads_keeps_the_order_of_keys() -> None:
    assert list(loads('{"b": 1, "a": {"y": 2, "x": 3}}')) == ["b", "a"]
    assert list(loads('{"b": 1, "a": {"y": 2, "x": 3}}')["a"]) == ["y", "x"]


def test_send_reports_a_duplicate_key_with_its_line() -> None:
    text = '{"type": "track", "userId": "u1", "event": "A"}\n{"type": "track", "event": "B", "event": "C"}\n'
    items = list(read_events(text, "in.ndjson"))
    assert [item for item in items if isinstance(item, str)] == [
        "in.ndjson:2: not accepted: duplicate key 'event' in one object"
    ]
    assert [item.track.event for item in items if isinstance(item, event_pb2.Event)] == ["A"]
