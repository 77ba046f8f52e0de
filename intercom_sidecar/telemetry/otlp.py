"""OTLP wire bytes of finished spans, written directly: an `ExportTraceServiceRequest` without protobuf objects.

The SDK's encoder (`opentelemetry-exporter-otlp-proto-common`) builds a Python protobuf message per span, per
attribute and per value, then serialises the tree: about 160,000 instructions per span, more than recording it.
This one writes the same protobuf wire format straight from the spans' fields, with what never changes encoded once
(the resource, the scope, attribute keys, span names): the bytes decode to the same `ExportTraceServiceRequest` as
the SDK encoder's for the same spans (a test holds it to that), for any span the SDK can export.

    ExportTraceServiceRequest  1: ResourceSpans*
    ResourceSpans              1: Resource  2: ScopeSpans*  3: schema_url
    ScopeSpans                 1: InstrumentationScope  2: Span*  3: schema_url
    Span                       1: trace_id  2: span_id  3: trace_state  4: parent_span_id  5: name  6: kind
                               7: start (fixed64)  8: end (fixed64)  9: KeyValue*  10: dropped attributes
                               11: Event*  12: dropped events  13: Link*  14: dropped links  15: Status
                               16: flags (fixed32)

As in the SDK encoder, an attribute whose value cannot be encoded (an int beyond 64 bits, an unknown type) is left
out and logged; a string that is not valid UTF-8 (a lone surrogate) is written with `?` in its place.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.span import DEFAULT_TRACE_STATE as _DEFAULT_TRACE_STATE

from intercom_sidecar.telemetry import names
from intercom_sidecar.telemetry import spans as span_names
from intercom_sidecar.telemetry.tracer import UNSET_STATUS as _UNSET
from intercom_sidecar.telemetry.tracer import LeanSpan

__all__ = [
    "EncodedSpan",
    "Home",
    "encode_plain_child",
    "encode_request",
    "encode_span",
    "encode_span_message",
    "encode_spans",
]

_log = logging.getLogger(__name__)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_CACHE_LIMIT = 4096  # distinct keys and names kept encoded (a bound in case names ever came from data)

_SPAN_FLAGS_HAS_IS_REMOTE = 0x100
_SPAN_FLAGS_IS_REMOTE = 0x200

_TIMES = struct.Struct("<BQBQ")  # tag 7 fixed64 start, tag 8 fixed64 end
_FLAGS = struct.Struct("<BBI")  # tag 16 (two bytes) fixed32 flags
_FIXED64 = struct.Struct("<BQ")
_DOUBLE = struct.Struct("<Bd")
_LINK_FLAGS = struct.Struct("<BI")
_IDS = struct.Struct(">HQQHQ")  # tag 1 and length 16, trace_id (two big-endian halves), tag 2 and length 8, span_id
_PARENT = struct.Struct(">HQ")  # tag 4 and length 8, parent_span_id
_IDS_PARENT = struct.Struct(">HQQHQHQ")  # _IDS, then _PARENT
_LOW64 = 2**64 - 1

_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
_SHORT_VARINTS = [bytes((number,)) for number in range(128)]
_TWO_BYTES = struct.Struct("BB").pack
_LOCAL_TAIL = b"\x7a\x00" + _FLAGS.pack(0x85, 0x01, _SPAN_FLAGS_HAS_IS_REMOTE)
"""Status unset, then the flags of a span whose parent is local (or that has none)."""
_LOCAL_TAIL_ROOT_TAG = _LOCAL_TAIL + b"\x12"
"""A child's tail, then the field tag of the Span that follows it."""


def _varint(value: int) -> bytes:
    """Unsigned LEB128 (negative int64 values as their 64-bit two's complement, as protobuf writes them)."""
    if 0 <= value < 128:
        return _SHORT_VARINTS[value]
    if 0 < value < 16384:  # two bytes: most span lengths
        return _TWO_BYTES(value & 0x7F | 0x80, value >> 7)
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    length = len(payload)
    return tag + (_SHORT_VARINTS[length] if length < 128 else _varint(length)) + payload


def _text(value: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


_key_cache: dict[str, bytes] = {}
_REPEATING_KEYS = frozenset(
    {
        names.ATTR_CALL_TYPE,
        names.ATTR_ACK_STATUS,
        names.ATTR_OUTCOME_REASON,
        span_names.ATTR_HTTP_METHOD,
        span_names.ATTR_URL_TEMPLATE,
        span_names.ATTR_SERVER_ADDRESS,
        span_names.ATTR_INTERCOM_ENDPOINT,
        span_names.ATTR_OUTCOME,
        span_names.ATTR_ERROR_TYPE,
    }
)
_name_cache: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    """KeyValue field 1, the key, encoded once per distinct key."""
    return _cached(_key_cache, b"\x0a", key)


def _name(name: str) -> bytes:
    """Span field 5, the name, encoded once per distinct name."""
    return _cached(_name_cache, b"\x2a", name)


def _cached(cache: dict[str, bytes], tag: bytes, text: str) -> bytes:
    encoded = cache.get(text)
    if encoded is None:
        encoded = _field(tag, _text(text))
        if len(cache) < _CACHE_LIMIT:
            cache[text] = encoded
    return encoded


def _any_value(value: Any) -> bytes:
    """The body of an AnyValue (a oneof: even a zero or an empty string is written)."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", _text(value))
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} does not fit in 64 bits")
        return b"\x18" + _varint(value)
    if kind is float:
        return _DOUBLE.pack(0x21, value)
    if value is None:
        return b""
    return _any_value_slow(value)


def _any_value_slow(value: Any) -> bytes:
    """Subclasses of the simple types, bytes, sequences and mappings, in the SDK encoder's order of checks."""
    if isinstance(value, bool):
        return _any_value(bool(value))
    if isinstance(value, str):
        return _any_value(str(value))
    if isinstance(value, int):
        return _any_value(int(value))
    if isinstance(value, float):
        return _any_value(float(value))
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        pairs = [_field(b"\x0a", _key(str(key)) + _field(b"\x12", _any_value(item))) for key, item in value.items()]
        return _field(b"\x32", b"".join(pairs))
    raise TypeError(f"invalid type {type(value).__name__} of an attribute value")


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue under `tag`; an attribute that cannot be encoded is left out, as the SDK encoder does.

    A string value (the common case) is its field's head, cached per tag, key and length, then its bytes; the
    whole field is cached for the keys whose values repeat from span to span."""
    if not attributes:
        return b""
    caches = _string_fields.get(tag)
    if caches is None:
        caches = _string_fields[tag] = ({key: {} for key in _REPEATING_KEYS}, {})
    whole, heads = caches
    parts: list[bytes] = []
    for key, value in attributes.items():
        if type(value) is not str:
            field = _other_attribute(tag, key, value)
            if field:
                parts.append(field)
            continue
        known = whole.get(key)
        if known is not None:
            cached = known.get(value)
            if cached is not None:
                parts.append(cached)
                continue
        try:
            encoded = value.encode()
        except UnicodeEncodeError:
            encoded = _text(value)
        by_length = heads.get(key)
        if by_length is None:
            by_length = heads[key] = {}
        head = by_length.get(len(encoded))
        if head is None:
            head = _string_head(tag, key, len(encoded))
            if len(by_length) < _CACHE_LIMIT:
                by_length[len(encoded)] = head
        field = head + encoded
        if known is not None and len(known) < _CACHE_LIMIT:
            known[value] = field
        parts.append(field)
    return b"".join(parts)


_string_fields: dict[bytes, tuple[dict[str, dict[str, bytes]], dict[str, dict[int, bytes]]]] = {}
"""Per tag: per key whose values repeat, per value, the whole field; per key, per length of a string value, the
field's head (everything before the value's bytes)."""


def _string_head(tag: bytes, key: str, length: int) -> bytes:
    """tag, KeyValue length, key, AnyValue tag and length, string_value tag and length: all but the value."""
    value_field = b"\x0a" + _varint(length)  # AnyValue.string_value, the bytes to follow
    any_value = b"\x12" + _varint(len(value_field) + length)  # KeyValue.value
    key_value = _key(key) + any_value + value_field
    return tag + _varint(len(key_value) + length) + key_value


def _other_attribute(tag: bytes, key: str, value: Any) -> bytes:
    """A KeyValue whose value is not a str; empty (and logged) when it cannot be encoded."""
    try:
        return _field(tag, (_key_cache.get(key) or _key(key)) + _field(b"\x12", _any_value(value)))
    except (TypeError, ValueError) as error:
        _log.warning("Span attribute `%s` left out of the export: %s.", key, error)
        return b""


def _dropped(tag: int, count: int) -> bytes:
    return bytes((tag,)) + _varint(count) if count else b""


def _status(status: Status | None) -> bytes:
    if status is None:
        return b""
    code = status.status_code
    description = status.description
    if code is StatusCode.UNSET and not description:
        return b"\x7a\x00"
    body = _field(b"\x12", _text(description)) if description else b""
    if code is StatusCode.OK:
        body += b"\x18\x01"
    elif code is StatusCode.ERROR:
        body += b"\x18\x02"
    elif code.value:
        body += b"\x18" + _varint(code.value)
    return _field(b"\x7a", body)


def _events(span: ReadableSpan) -> bytes:
    parts = []
    for event in span.events:
        body = (
            _FIXED64.pack(0x09, event.timestamp)
            + _field(b"\x12", _text(event.name))
            + _attributes(b"\x1a", event.attributes)
            + _dropped(0x20, event.dropped_attributes)
        )
        parts.append(_field(b"\x5a", body))
    return b"".join(parts)


def _links(links: Iterable[Link]) -> bytes:
    parts = []
    for link in links:
        context = link.context
        flags = _SPAN_FLAGS_HAS_IS_REMOTE | (_SPAN_FLAGS_IS_REMOTE if context.is_remote else 0)
        body = (
            b"\x0a\x10"
            + context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + context.span_id.to_bytes(8, "big")
            + _attributes(b"\x22", link.attributes)
            + _dropped(0x28, link.dropped_attributes)
            + _LINK_FLAGS.pack(0x35, flags)
        )
        parts.append(_field(b"\x6a", body))
    return b"".join(parts)


def _lean_span(span: LeanSpan) -> bytes:
    """The Span message of a LeanSpan of the common shape (`LeanSpan._plain`: internal, the default trace state,
    a local parent or none, no events, links or dropped attributes, status unset), from constant runs of bytes:
    the ids in one pack, the name, kind and times in another (per name), the attributes, the constant tail. A
    child folded into it (`LeanSpan._folded`) comes first; for a root span with attributes (an event's span), in
    the same pack as the span's head.

    Each constant run is one argument of a pack (a struct packs about 250 instructions per argument)."""
    context = span._context
    parent = span._parent
    layout = _layouts.get(span._name)
    if layout is None:
        layout = _layout(span._name)
    trace_id = context[0]
    attributes = span._attributes
    folded = span._folded
    if not attributes and layout.child_head:  # the length known in advance: it goes in the first pack
        if parent is not None:
            times = span._start_time, span._end_time  # both set on every ended span
            message = _plain_child(layout, trace_id, context[1], parent[1], *times)  # type: ignore[arg-type]
        else:
            message = _HEAD_IDS.pack(
                layout.root_head, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, context[1]
            ) + layout.pack_times_tail(layout.name_to_start, span._start_time, 0x41, span._end_time, _LOCAL_TAIL)
        return message if folded is None else _folded_child(trace_id, context[1], folded) + message
    encoded_attributes = _attributes(b"\x4a", attributes) if attributes else b""
    if parent is None:
        length = layout.root_fixed + len(encoded_attributes)
        if 128 <= length < 16384:  # the usual length of a span with attributes: two bytes, packed with the ids
            if folded is not None:
                child = _layouts.get(folded[0])
                if child is None:
                    child = _layout(folded[0])
                if child.child_head:
                    return _with_folded(layout, child, span, folded, length, encoded_attributes)
            head = _ROOT_FIELD_2.pack(
                0x12,
                (length & 0x7F | 0x80) << 8 | length >> 7,
                _TRACE_ID_TAG,
                trace_id >> 64,
                trace_id & _LOW64,
                _SPAN_ID_TAG,
                context[1],
            )
            name_to_end = layout.pack_times(layout.name_to_start, span._start_time, 0x41, span._end_time)
            message = b"".join((head, name_to_end, encoded_attributes, _LOCAL_TAIL))
            return message if folded is None else _folded_child(trace_id, context[1], folded) + message
        ids = _IDS.pack(_TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, context[1])
    else:
        ids = _IDS_PARENT.pack(
            _TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, context[1], _PARENT_ID_TAG, parent[1]
        )
    name_to_end = layout.pack_times(layout.name_to_start, span._start_time, 0x41, span._end_time)
    message = _field(b"\x12", b"".join((ids, name_to_end, encoded_attributes, _LOCAL_TAIL)))
    return message if folded is None else _folded_child(trace_id, context[1], folded) + message


def _with_folded(
    layout: _Layout,
    child: _Layout,
    span: LeanSpan,
    folded: tuple[str, int, int, int],
    length: int,
    encoded_attributes: bytes,
) -> bytes:
    """A root span whose length takes two bytes, with the child folded into it first: both heads in one pack, little
    endian throughout (the times are), so the ids go in as bytes."""
    pack = layout.with_child.get(folded[0])
    if pack is None:
        pack = struct.Struct(
            f"<4s16s2s8s2s8s{len(child.name_to_start)}sQBQ{len(_LOCAL_TAIL) + 1}sH2s16s2s8s"
            f"{len(layout.name_to_start)}sQBQ"
        ).pack
        if len(layout.with_child) < _CACHE_LIMIT:
            layout.with_child[folded[0]] = pack
    context = span._context
    trace_id = context[0].to_bytes(16, "big")
    span_id = context[1].to_bytes(8, "big")
    return b"".join(
        (
            pack(
                child.child_head,
                trace_id,
                b"\x12\x08",
                folded[1].to_bytes(8, "big"),
                b"\x22\x08",
                span_id,
                child.name_to_start,
                folded[2],
                0x41,
                folded[3],
                _LOCAL_TAIL_ROOT_TAG,
                length >> 7 << 8 | length & 0x7F | 0x80,  # the two-byte length, little endian
                b"\x0a\x10",
                trace_id,
                b"\x12\x08",
                span_id,
                layout.name_to_start,
                span._start_time,
                0x41,
                span._end_time,
            ),
            encoded_attributes,
            _LOCAL_TAIL,
        )
    )


def _folded_child(trace_id: int, parent_span_id: int, folded: tuple[str, int, int, int]) -> bytes:
    """The Span message of the child folded into a span (`LeanSpan._folded`), when not packed with it."""
    name, span_id, start, end = folded
    return encode_plain_child(name, trace_id, span_id, parent_span_id, start, end)


def encode_plain_child(name: str, trace_id: int, span_id: int, parent_span_id: int, start: int, end: int) -> bytes:
    """The Span message of a child of the common shape (`LeanSpan._plain`) without attributes, from its fields
    (`QueueSpanProcessor.take_plain_child`, a child folded into its parent)."""
    layout = _layouts.get(name)
    if layout is None:
        layout = _layout(name)
    if layout.child_head:  # _plain_child, inline: this runs for every event
        return _HEAD_IDS_PARENT.pack(
            layout.child_head, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, span_id, _PARENT_ID_TAG, parent_span_id
        ) + layout.pack_times_tail(layout.name_to_start, start, 0x41, end, _LOCAL_TAIL)
    ids = _IDS_PARENT.pack(  # a name too long for the length to take one byte
        _TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, span_id, _PARENT_ID_TAG, parent_span_id
    )
    return _field(b"\x12", ids + layout.pack_times_tail(layout.name_to_start, start, 0x41, end, _LOCAL_TAIL))


def _plain_child(layout: _Layout, trace_id: int, span_id: int, parent_span_id: int, start: int, end: int) -> bytes:
    return _HEAD_IDS_PARENT.pack(
        layout.child_head, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, span_id, _PARENT_ID_TAG, parent_span_id
    ) + layout.pack_times_tail(layout.name_to_start, start, 0x41, end, _LOCAL_TAIL)


class _Layout:
    """What a plain span of one name encodes with: its name field, kind and start tag in one run, a packer of that
    run and the times (and of the constant tail too), and the start of a Span message without attributes (field
    tag, length, trace id tag), without and with a parent: empty when the length takes more than one byte."""

    __slots__ = (
        "child_head",
        "name_to_start",
        "pack_times",
        "pack_times_tail",
        "root_fixed",
        "root_head",
        "with_child",
    )

    def __init__(self, name: str) -> None:
        self.name_to_start = _name(name) + b"\x30\x01\x39"  # name, kind INTERNAL, tag 7 (fixed64 start)
        run = len(self.name_to_start)
        self.pack_times = struct.Struct(f"<{run}sQBQ").pack  # the run, start, tag 8, end
        self.pack_times_tail = struct.Struct(f"<{run}sQBQ{len(_LOCAL_TAIL)}s").pack
        rest = run + 8 + 1 + 8 + len(_LOCAL_TAIL)
        root_length, child_length = _IDS.size + rest, _IDS_PARENT.size + rest
        self.root_fixed = root_length
        """The length of a root Span message but for its attributes."""
        self.root_head = bytes((0x12, root_length, 0x0A, 0x10)) if root_length < 128 else b""
        self.child_head = bytes((0x12, child_length, 0x0A, 0x10)) if child_length < 128 else b""
        self.with_child: dict[str, Callable[..., bytes]] = {}
        """Per name of a child folded into a root span of this name, the packer of both heads (`_with_folded`)."""


_TRACE_ID_TAG = 0x0A10  # tag 1, length 16 (as a big-endian H)
_SPAN_ID_TAG = 0x1208  # tag 2, length 8
_PARENT_ID_TAG = 0x2208  # tag 4, length 8
_HEAD_IDS = struct.Struct(">4sQQHQ")
"""Span field 2's tag and length (< 128: one byte) with the trace id's tag and length, then the ids."""
_HEAD_IDS_PARENT = struct.Struct(">4sQQHQHQ")
_ROOT_FIELD_2 = struct.Struct(">BHHQQHQ")
"""Span field 2's tag, a two-byte length (128 to 16383, as a big-endian H), then _IDS."""
_layouts: dict[str, _Layout] = {}


def _layout(name: str) -> _Layout:
    layout = _Layout(name)
    if len(_layouts) < _CACHE_LIMIT:
        _layouts[name] = layout
    return layout


def _span(span: ReadableSpan) -> bytes:
    """One Span message, its field tag and length included."""
    kind_of_span = type(span)
    if kind_of_span is LeanSpan and span._plain:  # type: ignore[attr-defined]
        return _lean_span(span)  # type: ignore[arg-type]
    if kind_of_span is LeanSpan or kind_of_span is ReadableSpan:
        # The sidecar's own spans and the SDK's finished ones: their fields, without a property call for each.
        context = span._context
        parent = span._parent
        name = span._name
        kind = span._kind
        start, end = span._start_time, span._end_time
        attributes = span._attributes
        status = span._status
    else:
        context, parent, name, kind = span.context, span.parent, span.name, span.kind
        start, end = span.start_time, span.end_time
        attributes = span.attributes
        status = span.status
    if kind_of_span is LeanSpan:
        dropped, events, links = span._dropped_attributes, span._events, span._links  # type: ignore[attr-defined]
    else:
        dropped, events, links = span.dropped_attributes, span.events, span.links
    if context is None:
        raise ValueError("a span without a context")
    # SpanContext is a tuple: trace_id, span_id, is_remote, trace_flags, trace_state, is_valid.
    trace_id = context[0]
    parts = [_IDS.pack(_TRACE_ID_TAG, trace_id >> 64, trace_id & _LOW64, _SPAN_ID_TAG, context[1])]
    trace_state = context[4]
    if trace_state is not _DEFAULT_TRACE_STATE and trace_state:
        parts.append(_field(b"\x1a", _text(",".join(f"{key}={value}" for key, value in trace_state.items()))))
    flags = _SPAN_FLAGS_HAS_IS_REMOTE
    if parent is not None:
        parts.append(_PARENT.pack(_PARENT_ID_TAG, parent[1]))
        if parent[2]:
            flags |= _SPAN_FLAGS_IS_REMOTE
    parts += (
        _name_cache.get(name) or _name(name),
        b"\x30\x01" if kind is SpanKind.INTERNAL else _KIND[kind],
        _TIMES.pack(0x39, start or 0, 0x41, end or 0),
    )
    if attributes:
        parts.append(_attributes(b"\x4a", attributes))
    if dropped:
        parts.append(_dropped(0x50, dropped))
    if events:
        parts += (_events(span), _dropped(0x60, span.dropped_events))
    if links:
        parts += (_links(links), _dropped(0x70, span.dropped_links))
    parts += (
        b"\x7a\x00" if status is _UNSET else _status(status),
        _FLAGS.pack(0x85, 0x01, flags),
    )
    body = b"".join(parts)
    return _field(b"\x12", body)


class _Encoded:
    """What a resource or a scope encodes to, kept for as long as the object itself (looked up by identity: a
    Resource's own hash serialises its attributes to JSON every time)."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes, bytes]] = {}

    def resource(self, resource: Resource) -> bytes:
        known = self._resources.get(id(resource))
        if known is not None and known[0] is resource:
            return known[1]
        body = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        if len(self._resources) >= _CACHE_LIMIT:
            self._resources.clear()
        self._resources[id(resource)] = (resource, body)
        return body

    def scope(self, scope: InstrumentationScope | None) -> tuple[bytes, bytes]:
        """The scope field and the schema_url field of a ScopeSpans."""
        known = self._scopes.get(id(scope))
        if known is not None and known[0] is scope:
            return known[1], known[2]
        body = b""
        schema_url = b""
        if scope is not None:
            if scope.name:
                body += _field(b"\x0a", _text(scope.name))
            if scope.version:
                body += _field(b"\x12", _text(scope.version))
            body += _attributes(b"\x1a", scope.attributes)
            if scope.schema_url:
                schema_url = _field(b"\x1a", _text(scope.schema_url))
        encoded = _field(b"\x0a", body)
        if len(self._scopes) >= _CACHE_LIMIT:
            self._scopes.clear()
        self._scopes[id(scope)] = (scope, encoded, schema_url)
        return encoded, schema_url


_encoded = _Encoded()


EncodedSpan = tuple[Resource, InstrumentationScope | None, bytes]
"""A finished span as `encode_span` gives it: its resource, its scope and its own Span message."""
Home = tuple[Resource, InstrumentationScope | None]
"""The resource and scope of the spans `encode_request` is given as bytes alone."""


def encode_span(span: ReadableSpan) -> EncodedSpan | None:
    """One span encoded on its own, to be put in a request later by `encode_request` (a span processor can
    encode each span as it ends, and hand its exporter bytes). None, logged, when the span cannot be encoded."""
    message = encode_span_message(span)
    if message is None:
        return None
    if type(span) is LeanSpan:
        return span._resource, span._instrumentation_scope or None, message
    return span.resource, span.instrumentation_scope or None, message


def encode_span_message(span: ReadableSpan) -> bytes | None:
    """The Span message of `span` (its field tag and length included); None, logged, when it cannot be encoded."""
    try:
        if type(span) is LeanSpan:  # the fields, without the property calls
            if span._plain:
                return _lean_span(span)  # with the child folded into it, if any
            folded = span._folded
            if folded is None:
                return _span(span)
            context = span._context
            return _folded_child(context[0], context[1], folded) + _span(span)
        return _span(span)
    except (TypeError, ValueError, AttributeError, KeyError, struct.error) as error:
        _log.warning("Span `%s` left out of the export: %s.", getattr(span, "name", "?"), error)
        return None


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised `ExportTraceServiceRequest` of `spans`, grouped by resource then scope as the SDK does.

    A span that cannot be encoded at all (no context) is left out and logged; the others are still sent."""
    return encode_request([encoded for encoded in map(encode_span, spans) if encoded is not None])


def encode_request(spans: Iterable[EncodedSpan | bytes], home: Home | None = None) -> bytes:
    """The serialised `ExportTraceServiceRequest` of spans `encode_span` encoded, grouped by resource then scope
    (in order of first appearance, as the SDK's encoder groups them). A span given as bytes alone (what
    `encode_span_message` made) belongs to `home`, its resource and scope: a processor whose spans nearly all share
    one pair queues just their bytes."""
    groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]] = {}
    home_spans: list[bytes] | None = None
    for item in spans:
        if isinstance(item, bytes):
            if home_spans is None:
                if home is None:
                    raise ValueError("a span given as bytes alone, without its resource and scope")
                home_spans = _group(groups, home[0], home[1] or None)
            home_spans.append(item)
        else:
            _group(groups, item[0], item[1]).append(item[2])
    out = []
    for resource, scopes in groups.values():
        parts = [_encoded.resource(resource)]
        for scope, encoded_spans in scopes.values():
            scope_field, schema_url = _encoded.scope(scope)
            parts.append(_field(b"\x12", scope_field + b"".join(encoded_spans) + schema_url))
        if resource.schema_url:
            parts.append(_field(b"\x1a", _text(resource.schema_url)))
        out.append(_field(b"\x0a", b"".join(parts)))
    return b"".join(out)


def _group(
    groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]],
    resource: Resource,
    scope: InstrumentationScope | None,
) -> list[bytes]:
    """The list the spans of `resource` and `scope` go in (new groups go last: the order of first appearance)."""
    by_scope = groups.get(id(resource))
    if by_scope is None:
        by_scope = groups[id(resource)] = (resource, {})
    in_scope = by_scope[1].get(id(scope))
    if in_scope is None:
        in_scope = by_scope[1][id(scope)] = (scope, [])
    return in_scope[1]
