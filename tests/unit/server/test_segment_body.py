"""`segment_body`: Segment HTTP API bodies -> events; encoding, JSON, size and shape problems named exactly."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from intercom_sidecar.server.segment_body import (
    MAX_BATCH_EVENTS,
    MAX_REQUEST_BYTES,
    BadRequestError,
    decompress,
    parse_json,
    parse_request,
)

LIMIT = 32 * 1024


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def parse(path: str, value: Any, encoding: str = "") -> list[Any]:
    return parse_request(path, body(value), encoding, max_event_bytes=LIMIT)


def test_a_single_call_takes_its_type_from_the_route() -> None:
    (item,) = parse("/v1/track", {"type": "identify", "userId": "u1", "event": "Paid", "messageId": "m1"})
    assert item.problem is None and item.message is not None
    assert (item.label, item.message_id) == ("track", "m1")
    assert item.message.WhichOneof("call") == "track"
    assert item.message.track.event == "Paid"


def test_a_missing_message_id_is_assigned_as_segment_does() -> None:
    (item,) = parse("/v1/identify", {"userId": "u1", "traits": {"email": "a@example.com"}})
    assert item.message is not None
    assert len(item.message_id) == 36 and item.message_id == item.message.message_id


def test_a_batch_merges_its_context_integrations_and_sent_at_into_each_event() -> None:
    items = parse(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "u1", "event": "A", "context": {"ip": "10.0.0.1"}},
                {"type": "page", "userId": "u1", "name": "Home", "sentAt": "2024-01-01T00:00:05Z"},
            ],
            "context": {"ip": "1.2.3.4", "library": {"name": "analytics-python"}},
            "integrations": {"Intercom": {"user_hash": "h"}},
            "sentAt": "2024-01-01T00:00:00Z",
            "writeKey": "ignored",
        },
    )
    first, second = (item.message for item in items)
    assert [item.label for item in items] == ["batch[0]", "batch[1]"]
    assert dict(first.context) == {"ip": "10.0.0.1", "library": {"name": "analytics-python"}}
    assert dict(second.context)["ip"] == "1.2.3.4"
    assert dict(first.integrations) == {"Intercom": {"user_hash": "h"}}
    assert first.sent_at.ToJsonString() == "2024-01-01T00:00:00Z"
    assert second.sent_at.ToJsonString() == "2024-01-01T00:00:05Z", "the event's own sentAt wins"


def test_import_is_the_batch_endpoint() -> None:
    (item,) = parse("/v1/import", {"batch": [{"type": "alias", "userId": "u1", "previousId": "anon-1"}]})
    assert item.message is not None and item.message.alias.previous_id == "anon-1"


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ("not an object", "event: must be a JSON object"),
        ({"userId": "u1", "event": "A"}, "event: type must be one of identify, track, page, screen, group, alias"),
        ({"type": "track", "userId": "u1", "event": "A", "properties": {"blob": "x" * LIMIT}}, "event: is 3"),
        ({"type": "track", "userId": "u1", "timestamp": "yesterday"}, "event: Failed to parse timestamp"),
    ],
)
def test_a_bad_event_in_a_batch_is_its_own_problem_and_the_others_are_kept(event: Any, problem: str) -> None:
    good = {"type": "track", "userId": "u1", "event": "Fine", "messageId": "good"}
    items = parse("/v1/batch", {"batch": [good, event]})
    assert items[0].message is not None and items[0].message_id == "good"
    assert items[1].message is None and items[1].problem is not None
    assert str(items[1].problem).startswith(problem), str(items[1].problem)


def test_an_event_of_exactly_the_limit_is_taken_and_one_byte_more_is_not() -> None:
    event = {"type": "track", "userId": "u1", "event": "A", "properties": {"blob": ""}}
    padding = LIMIT - len(json.dumps(event, separators=(",", ":")))
    event["properties"] = {"blob": "x" * padding}
    assert parse("/v1/batch", {"batch": [event]})[0].message is not None
    event["properties"] = {"blob": "x" * (padding + 1)}
    assert str(parse("/v1/batch", {"batch": [event]})[0].problem) == (
        f"event: is {LIMIT + 1} bytes of JSON; the limit is {LIMIT} bytes"
    )


def test_an_empty_batch_has_no_events() -> None:
    assert parse("/v1/batch", {"batch": []}) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("/v1/batch", {"events": []}, "batch: must be a list of events"),
        ("/v1/batch", {"batch": {"type": "track"}}, "batch: must be a list of events"),
        ("/v1/track", ["not", "an", "object"], "the body must be a JSON object"),
        ("/v1/batch", {"batch": [{}] * (MAX_BATCH_EVENTS + 1)}, f"batch: has {MAX_BATCH_EVENTS + 1} events; the limit"),
    ],
)
def test_a_request_of_the_wrong_shape_is_refused_whole(path: str, value: Any, message: str) -> None:
    with pytest.raises(BadRequestError) as error:
        parse(path, value)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"userId": "u1", "userId": "u2"}', "invalid JSON: duplicate key 'userId' in one object"),
        (b'{"n": NaN}', "invalid JSON: NaN is not a JSON number"),
        (b'{"n": -Infinity}', "invalid JSON: -Infinity is not a JSON number"),
        (b'{"n": 1e999}', "invalid JSON: 1e999 is out of range for a number"),
        (b'{"n": 1', "invalid JSON: Expecting ',' delimiter: line 1 column 8 (char 7)"),
        (b"\xff{}", "the body is not UTF-8 (byte 0)"),
        (b"  ", "the body is empty; send a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid JSON: nested too deeply"),
    ],
)
def test_json_is_strict(raw: bytes, message: str) -> None:
    with pytest.raises(BadRequestError) as error:
        parse_json(raw)
    assert str(error.value) == message


def test_gzip_bodies_are_inflated() -> None:
    event = {"userId": "u1", "event": "Zipped"}
    (item,) = parse_request("/v1/track", gzip.compress(body(event)), "gzip", max_event_bytes=LIMIT)
    assert item.message is not None and item.message.track.event == "Zipped"


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))  # 8 MB of spaces in about 8 KB
    assert len(bomb) < MAX_REQUEST_BYTES
    with pytest.raises(BadRequestError) as error:
        decompress(bomb, "gzip", MAX_REQUEST_BYTES)
    assert str(error.value) == "the body is over 512000 bytes (500 KB) after decompression"


def test_exactly_the_limit_inflates() -> None:
    assert len(decompress(gzip.compress(b"x" * 1000), "GZip", 1000)) == 1000
    with pytest.raises(BadRequestError):
        decompress(gzip.compress(b"x" * 1001), "gzip", 1000)


@pytest.mark.parametrize(
    ("raw", "encoding", "message"),
    [
        (b"not gzip at all", "gzip", "the body is not valid gzip (Error -3 while decompressing data: incorrect header"),
        (gzip.compress(b"{}")[:-6], "gzip", "the gzip body is truncated"),
        (gzip.compress(b"{}") + b"junk", "gzip", "the body has data after its gzip stream"),
        (b"{}", "br", "Content-Encoding 'br' is not supported (send gzip or none)"),
        (b"x" * 1001, "", "the body is over 1000 bytes (0 KB) after decompression"),
    ],
)
def test_bad_encodings_are_named(raw: bytes, encoding: str, message: str) -> None:
    with pytest.raises(BadRequestError) as error:
        decompress(raw, encoding, 1000)
    assert str(error.value).startswith(message)
