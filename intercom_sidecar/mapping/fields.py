"""Pure helpers that turn Segment values into values Intercom accepts."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = [
    "MAX_ATTRIBUTE_NAME_CHARS",
    "MAX_STRING_CHARS",
    "clean_key",
    "custom_attributes",
    "data_type_of",
    "flatten",
    "parse_iso_datetime",
    "to_cents",
    "to_unix_seconds",
    "truncate",
    "unix_time",
]

MAX_STRING_CHARS = 255
MAX_ATTRIBUTE_NAME_CHARS = 190

_FORBIDDEN_KEY_CHARS = re.compile(r"[.$]")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def to_unix_seconds(seconds: float) -> int:
    """Whole Unix seconds, as Intercom wants every timestamp."""
    return int(seconds)


def parse_iso_datetime(value: str) -> int | None:
    """Unix seconds for an ISO-8601 date or date-time string (UTC when no offset is given), else None."""
    if not _ISO_DATETIME.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def to_cents(amount: Any) -> int | None:
    """An amount in currency units as integer cents, exactly (19.99 -> 1999, 0.1 + 0.2 -> 30), else None."""
    if type(amount) is float:  # the usual case: integer arithmetic on its shortest repr, as Decimal would do
        cents = _float_cents(amount)
        if cents is not None:
            return cents
    elif type(amount) is int and -_EXACT_INT < amount < _EXACT_INT:
        return amount * 100
    return _decimal_cents(amount)


_EXACT_INT = 10**25
"""Whole amounts below this in size have exact cents within Decimal's 28 digits; larger ones go through Decimal."""


def _float_cents(amount: float) -> int | None:
    """Cents of a float whose repr has no exponent (ROUND_HALF_UP, as `_decimal_cents`); None for the others."""
    text = repr(amount)
    whole, _, fraction = text.partition(".")
    if not fraction.isdigit():  # an exponent (1e+16, 1e-05), inf or nan: Decimal decides
        return None
    places = len(fraction)
    if places <= 2:
        return int(whole + fraction + "0" * (2 - places))
    scale: int = 10 ** (places - 2)
    cents, rest = divmod(int(whole.lstrip("-") + fraction), scale)
    if 2 * rest >= scale:
        cents += 1
    return -cents if whole.startswith("-") else cents


def _decimal_cents(amount: Any) -> int | None:
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return None
    try:
        units = Decimal(repr(amount) if isinstance(amount, float) else str(amount).strip())
    except InvalidOperation:
        return None
    if not units.is_finite():
        return None
    try:
        return int((units * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation:  # more digits than Decimal's precision: not a price
        return None


def truncate(value: str, limit: int = MAX_STRING_CHARS) -> str:
    return value if len(value) <= limit else value[:limit]


def clean_key(key: str) -> str:
    """An attribute or metadata name without the characters Intercom forbids, at most 190 characters."""
    if "." in key or "$" in key:  # rare: most keys need no regular expression
        key = _FORBIDDEN_KEY_CHARS.sub("_", key)
    return key if len(key) <= MAX_ATTRIBUTE_NAME_CHARS else key[:MAX_ATTRIBUTE_NAME_CHARS]


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(name, value) pairs with nested objects flattened (`a_b`); lists and nulls are dropped."""
    for key, value in values.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, str | int | float):  # the usual case first: no abstract-class check for it
            yield clean_key(name), value
        elif isinstance(value, Mapping):
            yield from flatten(value, name)
        elif value is not None and not isinstance(value, list):
            yield clean_key(name), value


def data_type_of(value: Any) -> str:
    """The Intercom data attribute type (`data_type`) for a cleaned attribute value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


_MILLISECONDS_THRESHOLD = 100_000_000_000  # a Unix time above this is in milliseconds (year 5138 in seconds)


def unix_time(value: Any) -> int | None:
    """Unix seconds from an ISO-8601 string, or from a number of seconds (or milliseconds); else None."""
    if isinstance(value, str):
        return parse_iso_datetime(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value / 1000) if value >= _MILLISECONDS_THRESHOLD else int(value)
    return None


def custom_attributes(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Custom attribute values and their Intercom data types: nested objects flattened with `_`, lists and
    nulls dropped, names cleaned, strings cut to 255 characters, ISO-8601 dates as Unix seconds (type date)."""
    custom: dict[str, Any] = {}
    types: dict[str, str] = {}
    for name, value in flatten(values):
        if isinstance(value, str):
            as_time = parse_iso_datetime(value)
            if as_time is not None:
                custom[name], types[name] = as_time, "date"
                continue
            value = truncate(value)
        custom[name], types[name] = value, data_type_of(value)
    return custom, types
