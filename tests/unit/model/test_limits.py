"""The input limits: each one refuses the event with a reason naming the field path and the setting, and the
decoder's work stays linear in the event and stops at the limit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.model.events import Event
from intercom_sidecar.model.from_proto import DecodeLimits, event_from_bytes, event_from_proto, struct_to_dict
from intercom_sidecar.model.wire import (
    TooManyEventsError,
    WireError,
    parse_event,
    peek_message_id,
    split_send_request,
)
from tests.wire_bytes import deeply_nested_traits, field

NOW = 1_700_000_000.0
YEAR = 365 * 24 * 3600.0


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def identify(traits: dict[str, Any], **fields: Any) -> event_pb2.Event:
    values: dict[str, Any] = {
        "message_id": "m1",
        "user_id": "u1",
        "identify": event_pb2.Identify(traits=struct(traits)),
    }
    values.update(fields)
    return event_pb2.Event(**values)


def decode(message: event_pb2.Event, **limits: Any) -> Event:
    return event_from_proto(message, now=NOW, limits=DecodeLimits(**limits))


def refused(message: event_pb2.Event, **limits: Any) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as caught:
        decode(message, **limits)
    return caught.value


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep counting itself: nested(1) == {"v": 1}."""
    value: dict[str, Any] = {"v": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


# depth ------------------------------------------------------------------------------------------------------


def test_depth_at_the_limit_is_accepted_and_one_more_level_names_the_path_and_the_setting() -> None:
    assert decode(identify(nested(4)), max_depth=4).call.traits == nested(4)  # type: ignore[union-attr]

    error = refused(identify(nested(5)), max_depth=4)
    assert error.field == "identify.traits.n.n.n.n"  # the fifth object
    assert error.problem == "nests objects and lists deeper than 4 levels (INTERCOM_SIDECAR_MAX_DEPTH)"


def test_lists_count_as_levels_and_their_index_is_in_the_path() -> None:
    error = refused(
        event_pb2.Event(message_id="m1", user_id="u1", identify={}, context=struct({"a": [1, [2, [3]]]})), max_depth=3
    )
    assert error.field == "context.a[1][1]"


def test_the_deepest_allowed_setting_fits_within_protobufs_own_nesting_limit() -> None:
    # INTERCOM_SIDECAR_MAX_DEPTH is capped at 30 (config.py); an event that deep must parse and decode.
    payload = deeply_nested_traits(29)  # 29 levels around a one-key object: 30 objects
    event, _ = event_from_bytes(payload, now=NOW, limits=DecodeLimits(max_depth=30))
    assert event.type == "identify"


# keys ------------------------------------------------------------------------------------------------------


def test_keys_are_counted_across_every_object_of_the_event() -> None:
    message = identify({"a": 1, "b": {"c": 2}}, context=struct({"d": 3}), integrations=struct({"e": True}))
    decode(message, max_keys=5)  # a, b, c, d, e: exactly the limit

    error = refused(message, max_keys=4)
    assert error.field == "integrations.e"
    assert error.problem == (
        "the event has more than 4 keys in its objects (traits or properties, context and integrations together; "
        "INTERCOM_SIDECAR_MAX_KEYS)"
    )


_LONG = "is 11 characters; the limit is 10"
_KEYS = "the event has more than 2 keys"


@pytest.mark.parametrize(
    ("traits", "field", "problem"),
    [
        ({"a": "x" * 11}, "a", _LONG),  # the key is counted, then its value looked at
        ({"k" * 11: 1}, "k" * 11, "the key is 11 characters; the limit is 10"),
        ({"a": [1, "x" * 11]}, "a[1]", _LONG),
        # An object's own keys all come before what nests in them: here the third key is a nested one.
        ({"a": {"b": "x" * 11}, "c": 2}, "a.b", _KEYS),
        ({"a": {"b": 1}, "c": [1, 2, 3]}, "a.b", _KEYS),
    ],
)
def test_each_limit_names_the_first_value_that_crosses_it(traits: dict[str, Any], field: str, problem: str) -> None:
    error = refused(identify(traits), max_keys=2, max_string_chars=10)
    assert (error.field, error.problem[: len(problem)]) == (f"identify.traits.{field}", problem)


def test_within_an_object_the_first_problem_in_iteration_order_is_reported() -> None:
    # protobuf maps iterate in an order of their own (seeded per process), so the expected field follows it.
    message = identify({"a": 1, "b": "x" * 11, "c": 3})
    order = list(message.identify.traits.fields)
    error = event_pb2_refused(message)
    if order.index("b") < 2:  # b is counted, then its long string refused
        assert (error.field, error.problem[: len(_LONG)]) == ("identify.traits.b", _LONG)
    else:  # the two keys before b use up the count
        assert (error.field, error.problem[: len(_KEYS)]) == ("identify.traits.b", _KEYS)


def event_pb2_refused(message: event_pb2.Event) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as caught:
        event_from_proto(message, now=NOW, limits=DecodeLimits(max_keys=2, max_string_chars=10))
    return caught.value


def test_a_struct_that_fits_exactly_leaves_no_keys_for_the_next_one() -> None:
    message = identify({"a": 1, "b": 2}, context=struct({}), integrations=struct({"c": True}))
    assert refused(message, max_keys=2).field == "integrations.c"
    assert decode(message, max_keys=3).integrations == {"c": True}


def test_counting_keys_stops_at_the_limit() -> None:
    many, some = struct({f"k{i}": i for i in range(20_000)}), struct({f"k{i}": i for i in range(20)})
    calls = _calls(lambda: _try(many, max_keys=10))
    few = _calls(lambda: _try(some, max_keys=10))
    assert calls <= few * 1.5, "the work after the limit is crossed must not depend on what follows"


# strings ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "path"),
    [
        (identify({"bio": "x" * 11}), "identify.traits.bio"),
        (identify({"tags": ["ok", "x" * 11]}), "identify.traits.tags[1]"),
        (event_pb2.Event(message_id="m1", user_id="u1", track=event_pb2.Track(event="x" * 11)), "track.event"),
        (event_pb2.Event(message_id="m1", user_id="u1", page=event_pb2.Page(name="x" * 11)), "page.name"),
        (event_pb2.Event(message_id="m1", user_id="u1", screen=event_pb2.Screen(category="x" * 11)), "screen.category"),
    ],
)
def test_long_strings_are_refused_with_their_path(message: event_pb2.Event, path: str) -> None:
    error = refused(message, max_string_chars=10)
    assert error.field == path
    assert error.problem == "is 11 characters; the limit is 10 (INTERCOM_SIDECAR_MAX_STRING_CHARS)"
    decode(message, max_string_chars=11)


def test_long_keys_are_refused() -> None:
    error = refused(identify({"k" * 11: 1}), max_string_chars=10)
    assert error.field == "identify.traits." + "k" * 11
    assert error.problem == "the key is 11 characters; the limit is 10 (INTERCOM_SIDECAR_MAX_STRING_CHARS)"


# timestamps ------------------------------------------------------------------------------------------------


def test_timestamps_far_in_the_past_are_refused_and_zero_means_no_limit() -> None:
    at_limit = identify({}, timestamp=timestamp_pb2.Timestamp(seconds=int(NOW - 10 * YEAR)))
    assert decode(at_limit, max_past_seconds=10 * YEAR).timestamp == NOW - 10 * YEAR

    epoch = identify({}, timestamp=timestamp_pb2.Timestamp(seconds=0))
    error = refused(epoch, max_past_seconds=10 * YEAR)
    assert error.field == "timestamp"
    assert error.problem == (
        "is too far in the past (0 s since the epoch; the limit is 3.1536e+08 s ago, INTERCOM_SIDECAR_MAX_PAST_SECONDS)"
    )
    assert refused(identify({}, sent_at=timestamp_pb2.Timestamp(seconds=1)), max_past_seconds=YEAR).field == "sent_at"
    assert decode(epoch, max_past_seconds=0).timestamp == 0.0


# ids -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("message_id", ["with space", "tab\there", "caf\u00e9", "line\nbreak", "\x00"])
def test_message_id_must_be_printable_ascii(message_id: str) -> None:
    error = refused(identify({}, message_id=message_id))
    assert error.field == "message_id"


@pytest.mark.parametrize("field_name", ["user_id", "anonymous_id"])
def test_other_ids_may_be_unicode_but_not_control_characters(field_name: str) -> None:
    assert getattr(decode(identify({}, **{field_name: "zoë@example.com"})), field_name) == "zoë@example.com"
    error = refused(identify({}, **{field_name: "u\x001"}))
    assert (error.field, error.problem) == (field_name, "must not contain control characters")


# bytes protobuf cannot parse -------------------------------------------------------------------------------

GOOD = identify({"plan": "pro"}).SerializeToString()


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (field(1, b"m1") + field(2, b"\xff\xfe") + field(10, b""), "user_id"),
        (field(1, b"m1") + field(2, b"u1") + field(11, field(1, b"Bought \xc3")), "track.event"),
        (
            field(1, b"m1") + field(2, b"u1") + field(10, field(1, field(1, field(1, b"pl\xe9") + field(2, b"")))),
            "identify.traits.pl\ufffd",
        ),
        (
            field(1, b"m1")
            + field(2, b"u1")
            + field(10, field(1, field(1, field(1, b"plan") + field(2, field(3, b"\xc0\xaf"))))),
            "identify.traits.plan",
        ),
        (
            field(1, b"m1") + field(2, b"u1") + field(8, field(1, b"traceparent") + field(2, b"\x80")),
            "trace_context.traceparent",
        ),
    ],
    ids=["user_id", "track.event", "a Struct key", "a Struct value", "a trace_context value"],
)
def test_invalid_utf8_is_invalid_and_names_the_field(payload: bytes, path: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(payload)
    assert (caught.value.field, caught.value.problem) == (path, "is not valid UTF-8")


@pytest.fixture(scope="module")
def very_deep() -> bytes:
    return deeply_nested_traits(100_000)


def test_100000_levels_of_nesting_is_an_invalid_event_not_a_crash(very_deep: bytes) -> None:
    payload = very_deep
    assert len(payload) > 1_000_000
    with pytest.raises(InvalidEventError) as caught:
        event_from_bytes(payload, now=NOW, limits=DecodeLimits(max_event_bytes=len(payload)))
    assert caught.value.field.startswith("identify.traits.a.a.a")
    assert caught.value.problem == "is nested deeper than protobuf's limit of 100 messages"
    assert len(str(caught.value)) < 300, "the reason stays short whatever the path"


def test_an_oversized_payload_is_refused_before_it_is_parsed(very_deep: bytes) -> None:
    with pytest.raises(InvalidEventError) as caught:
        event_from_bytes(very_deep, now=NOW, limits=DecodeLimits())
    assert caught.value.field == "event"
    assert caught.value.problem.endswith("the limit is 32768 bytes (INTERCOM_SIDECAR_MAX_EVENT_BYTES)")


@pytest.mark.parametrize("cut", [1, 5, len(GOOD) - 1])
def test_truncated_bytes_are_invalid(cut: int) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(GOOD[:cut])
    assert caught.value.field == "event"
    assert caught.value.problem.startswith("is not valid protobuf wire format (")


def test_the_message_id_of_an_unparsable_event_is_read_when_it_is_usable() -> None:
    assert peek_message_id(field(1, b"m-42") + field(2, b"\xff")) == "m-42"
    assert peek_message_id(field(1, b"bad id") + field(2, b"\xff")) == ""
    assert peek_message_id(field(1, b"m" * 256)) == ""
    assert peek_message_id(b"\x0a\x05m") == ""  # truncated


def test_a_send_request_is_split_into_unparsed_events_and_the_count_is_limited() -> None:
    events = [GOOD, b"\xff\xff", b""]
    payload = b"".join(field(1, event) for event in events)
    assert split_send_request(payload, 3) == events
    with pytest.raises(TooManyEventsError, match="more than 2 events"):
        split_send_request(payload, 2)
    with pytest.raises(WireError):
        split_send_request(payload[:-3] + b"\x0a\x09", 3)
    request = service_pb2.SendRequest(events=[identify({}, message_id=f"m{i}") for i in range(3)])
    assert [
        event_pb2.Event.FromString(raw).message_id for raw in split_send_request(request.SerializeToString(), 3)
    ] == [
        "m0",
        "m1",
        "m2",
    ]


# linear work ------------------------------------------------------------------------------------------------


def _try(value: struct_pb2.Struct, **limits: Any) -> None:
    try:
        struct_to_dict(value, DecodeLimits(**limits))
    except ValueError:
        pass


def _calls(work: Callable[[], None]) -> int:
    """Python and C function calls made by `work`: a deterministic measure of work, unlike a timer."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return count


def _wide(n: int) -> struct_pb2.Struct:
    return struct({f"key{i}": {"s": "x", "l": [i, True, None]} for i in range(n)})


def _deep_lists(n: int) -> struct_pb2.Struct:
    """n lists side by side, each nested 8 deep."""
    item: Any = "leaf"
    for _ in range(8):
        item = [item, 1]
    return struct({f"k{i}": item for i in range(n)})


@pytest.mark.parametrize("shape", [_wide, _deep_lists], ids=["wide", "deep lists"])
def test_conversion_work_grows_linearly(shape: Callable[[int], struct_pb2.Struct]) -> None:
    small, large = shape(500), shape(2000)
    unlimited = {"max_keys": 10**9, "max_depth": 30, "max_string_chars": 10**9}
    ratio = _calls(lambda: _try(large, **unlimited)) / _calls(lambda: _try(small, **unlimited))
    assert 3.5 < ratio < 4.5, f"4x the input cost {ratio:.2f}x the calls"
