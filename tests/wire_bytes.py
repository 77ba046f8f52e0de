"""Serialized protobuf built by hand, for input protobuf's own serializer would never produce (or only slowly)."""

from __future__ import annotations

__all__ = ["deeply_nested_traits", "field", "varint"]


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def deeply_nested_traits(levels: int, *, message_id: str = "deep-1") -> bytes:
    """An identify event whose traits nest `levels` objects deep: {"a": {"a": {... {"a": "leaf"}}}}.

    Built in time linear in `levels`: every level is a prefix (Struct.fields entry, key "a", Value.struct_value)
    in front of the next one and nothing behind it, so the lengths are summed from the inside out and the
    prefixes joined once."""
    leaf = field(1, b"\x0a\x01a" + field(2, field(3, b"leaf")))  # Struct{fields: {"a": Value{string_value}}}
    prefixes: list[bytes] = []
    inner = len(leaf)
    for _ in range(levels):
        value_len = len(varint(5 << 3 | 2)) + len(varint(inner)) + inner  # Value{struct_value = inner Struct}
        entry_len = 3 + len(varint(2 << 3 | 2)) + len(varint(value_len)) + value_len  # key "a", then the value
        prefix = (
            varint(1 << 3 | 2)
            + varint(entry_len)
            + b"\x0a\x01a"
            + varint(2 << 3 | 2)
            + varint(value_len)
            + varint(5 << 3 | 2)
            + varint(inner)
        )
        prefixes.append(prefix)
        inner += len(prefix)
    traits = b"".join(reversed(prefixes)) + leaf
    identify = field(1, traits)  # Identify.traits
    return field(1, message_id.encode()) + field(2, b"u1") + field(10, identify)
