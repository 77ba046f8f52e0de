"""Hypothesis strategies for Segment events: valid and invalid, as protobuf messages and as (possibly corrupt) bytes.

Keys and values lean towards the ones the mapping looks at (email, company, revenue, integrations.Intercom...),
so generated events reach every branch of `mapping/`, not only the custom-attribute path.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from hypothesis import strategies as st

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2

__all__ = ["NOW", "event_bytes", "events", "json_objects"]

NOW = 1_700_000_000.0

_KNOWN_KEYS = [
    "email", "name", "firstName", "lastName", "phone", "avatar", "createdAt", "created_at", "company", "companies",
    "id", "company_id", "plan", "industry", "website", "employees", "size", "monthly_spend", "remove", "revenue",
    "total", "currency", "price", "active", "Intercom", "All", "user_hash", "unsubscribedFromEmails", "traits",
    "url", "value", "a.b", "$set", "",
]  # fmt: skip


def _long(low: int, high: int) -> st.SearchStrategy[str]:
    """Long strings, cheaply: drawing hundreds of characters one by one makes generation the slow part."""
    return st.builds(lambda head, size: (head or "x") * size, st.text(min_size=1, max_size=2), st.integers(low, high))


keys = st.one_of(st.sampled_from(_KNOWN_KEYS), st.text(max_size=12), _long(180, 260))
numbers = st.one_of(
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 19.99, 0.1, 1e300, -0.0, 2.0**53 + 2, 1_700_000_000, 1_700_000_000_000]),
)
strings = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["ada@example.com", " ", "2024-01-02T03:04:05Z", "2024-13-45", "USD", "https://x.test/a", "50"]),
    _long(250, 300),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)


def _json(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
        max_leaves=12,
    )


json_objects = st.dictionaries(keys, _json(scalars), max_size=8)
_companies = st.one_of(
    strings,
    st.fixed_dictionaries(
        {}, optional={"id": st.one_of(strings, st.integers(0, 10**6)), "name": strings, "remove": st.booleans()}
    ).flatmap(lambda fixed: st.dictionaries(keys, scalars, max_size=3).map(lambda extra: {**extra, **fixed})),
)
_traits = st.fixed_dictionaries(
    {},
    optional={
        "email": strings,
        "name": strings,
        "createdAt": st.one_of(strings, numbers),
        "company": _companies,
        "companies": st.lists(_companies, max_size=3),
    },
).flatmap(lambda fixed: json_objects.map(lambda extra: {**extra, **fixed}))
_properties = st.fixed_dictionaries(
    {}, optional={"revenue": st.one_of(numbers, strings), "currency": strings, "email": strings}
).flatmap(lambda fixed: json_objects.map(lambda extra: {**extra, **fixed}))
_integrations = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "All": st.booleans(),
            "Intercom": st.one_of(st.booleans(), st.just({}), st.fixed_dictionaries({"user_hash": strings})),
        },
    ),
    json_objects,
)
_context = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {}, optional={"active": st.booleans(), "traits": _traits, "Intercom": json_objects, "ip": strings}
    ),
    json_objects,
)

ids = st.one_of(
    st.sampled_from(["u1", "user-42", "zoë@example.com", "", " ", "a" * 255, "a" * 256, "tab\tid"]),
    st.text(max_size=20),
)
message_ids = st.one_of(
    st.uuids().map(str),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    ids,
)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def _timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp | None]:
    seconds = st.one_of(
        st.integers(int(NOW) - 86400 * 30, int(NOW) + 3600),
        st.integers(-(2**40), 2**40),
        st.sampled_from([0, int(NOW) + 86400 * 2, int(NOW) - 3650 * 86400 - 1]),
    )
    nanos = st.one_of(st.just(0), st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1))
    return st.one_of(st.none(), st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos))


@st.composite
def _calls(draw: st.DrawFn, plausible: bool) -> dict[str, Any]:
    kinds = ["identify", "track", "page", "screen", "group", "alias"]
    kind = draw(st.sampled_from(kinds if plausible else [*kinds, "none"]))
    group_ids = st.sampled_from(["g1", "acme"]) if plausible else ids
    if kind == "identify":
        return {"identify": event_pb2.Identify(traits=_struct(draw(_traits)))}
    if kind == "track":
        name = draw(st.one_of(st.sampled_from(["Order Completed", "", "  "]), strings))
        return {"track": event_pb2.Track(event=name, properties=_struct(draw(_properties)))}
    if kind in ("page", "screen"):
        message = event_pb2.Page if kind == "page" else event_pb2.Screen
        call = message(name=draw(strings), category=draw(strings), properties=_struct(draw(_properties)))
        return {kind: call}
    if kind == "group":
        return {"group": event_pb2.Group(group_id=draw(group_ids), traits=_struct(draw(_traits)))}
    if kind == "alias":
        return {"alias": event_pb2.Alias(previous_id=draw(group_ids))}
    return {}


@st.composite
def events(draw: st.DrawFn, *, plausible: bool = False) -> event_pb2.Event:
    """An event message, often wrong in one or more ways (ids, timestamps, NaN, no call). `plausible` ones have
    sound ids, timestamps and a call, so most get past validation and their payloads reach the mapping."""
    good_ids = st.sampled_from(["u1", "user-42", "zoë@example.com"])
    fields: dict[str, Any] = {
        "message_id": draw(st.uuids().map(str) if plausible else message_ids),
        "user_id": draw(st.one_of(good_ids, st.just("")) if plausible else st.one_of(st.just("u1"), st.just(""), ids)),
        "anonymous_id": draw(st.one_of(st.just(""), good_ids if plausible else ids)),
        "context": _struct(draw(_context)),
        "integrations": _struct(draw(_integrations)),
        **draw(_calls(plausible)),
    }
    if plausible and not fields["user_id"]:
        fields["anonymous_id"] = "anon-1"
    for name in ("timestamp", "sent_at"):
        value = draw(_plausible_timestamps if plausible else _timestamps())
        if value is not None:
            fields[name] = value
    message = event_pb2.Event(**fields)
    if draw(st.booleans()):
        traceparent = st.one_of(strings, st.just("00-" + "1" * 32 + "-" + "2" * 16 + "-01"))
        message.trace_context["traceparent"] = draw(traceparent)
    return message


_plausible_timestamps = st.one_of(
    st.none(), st.builds(timestamp_pb2.Timestamp, seconds=st.integers(int(NOW) - 86400 * 365, int(NOW) + 3600))
)


@st.composite
def _corrupted(draw: st.DrawFn) -> bytes:
    """A serialized event with bytes flipped, cut, inserted or replaced by invalid UTF-8."""
    data = bytearray(draw(events()).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "utf8"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            data[at] = draw(st.sampled_from([0x80, 0xC0, 0xFF, 0xED]))
    return bytes(data)


event_bytes = st.one_of(
    events().map(lambda message: message.SerializeToString()),
    _corrupted(),
    st.binary(max_size=200),
)
"""Bytes as they could arrive on the wire: serialized events (valid or not), corrupted ones, and noise."""
