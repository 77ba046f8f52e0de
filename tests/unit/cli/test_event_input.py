"""`send`'s input: NDJSON, JSON objects over several lines, a JSON array; one message per problem."""

from __future__ import annotations

import json

import pytest

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.cli.event_input import read_events

TRACK = {"type": "track", "messageId": "t1", "userId": "u1", "event": "Order Completed"}
IDENTIFY = {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"plan": "pro"}}


def read(text: str) -> list[str]:
    """Each item as its message id, or the problem's message."""
    return [item if isinstance(item, str) else item.message_id for item in read_events(text, "in.json")]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"{json.dumps(TRACK)}\n{json.dumps(IDENTIFY)}\n", id="ndjson"),
        pytest.param(f"\n{json.dumps(TRACK)}\r\n\n{json.dumps(IDENTIFY)}", id="ndjson-blank-lines-crlf"),
        pytest.param(json.dumps([TRACK, IDENTIFY], indent=2), id="array"),
        pytest.param(f"{json.dumps(TRACK, indent=2)}\n{json.dumps(IDENTIFY, indent=4)}\n", id="pretty-objects"),
        pytest.param(f"{json.dumps(TRACK)}{json.dumps(IDENTIFY)}", id="concatenated"),
    ],
)
def test_every_input_shape_gives_the_events_in_order(text: str) -> None:
    assert read(text) == ["t1", "i1"]


def test_a_single_pretty_printed_event() -> None:
    [event] = list(read_events(json.dumps(IDENTIFY, indent=2), "-"))
    assert isinstance(event, event_pb2.Event)
    assert event.identify.traits["plan"] == "pro"


def test_a_bad_ndjson_line_is_reported_and_the_others_are_read() -> None:
    text = f'{json.dumps(TRACK)}\n{{"type": "track",\n{json.dumps(IDENTIFY)}\n'
    assert read(text) == [
        "in.json:2: not valid JSON: Expecting property name enclosed in double quotes at column 18",
        "t1",
        "i1",
    ]


def test_broken_multi_line_json_is_one_message_with_its_line() -> None:
    text = '{\n  "type": "track",\n  "userId" "u1"\n}\n'
    assert read(text) == ["in.json:3: not valid JSON: Expecting ':' delimiter at column 12"]


def test_a_broken_array_is_one_message() -> None:
    assert read('[{"type": "track"},\n') == ["in.json: not valid JSON: Expecting value: line 2 column 1 (char 20)"]


def test_an_event_that_is_not_segment_json_names_where_it_is() -> None:
    text = json.dumps([TRACK, {"type": "nope"}, ["not", "an", "object"]])
    assert read(text) == [
        "t1",
        "in.json: event 2: type must be one of identify, track, page, screen, group, alias, got 'nope'",
        "in.json: event 3: an event must be a JSON object",
    ]
    ndjson = f'{json.dumps(TRACK)}\n\n{{"type": "nope"}}\n'
    assert read(ndjson)[1].startswith("in.json:3: type must be one of")


def test_nothing_in_nothing_out() -> None:
    assert read("") == []
    assert read(" \n\n") == []
