"""The pure value helpers behind the mappings."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intercom_sidecar.mapping.fields import (
    MAX_ATTRIBUTE_NAME_CHARS,
    MAX_STRING_CHARS,
    clean_key,
    data_type_of,
    flatten,
    parse_iso_datetime,
    to_cents,
    to_unix_seconds,
    truncate,
)

JAN_2020 = 1_577_836_800


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        (19.99, 1999),
        (0.1 + 0.2, 30),
        (1.005, 101),
        (0.125, 13),
        (-0.125, -13),
        (20, 2000),
        (0, 0),
        (1e-9, 0),
        ("19.99", 1999),
        ("  5 ", 500),
        ("1e2", 10000),
        ("abc", None),
        ("", None),
        ("NaN", None),
        ("Infinity", None),
        (float("inf"), None),
        (True, None),
        (None, None),
        ([1], None),
        ({"amount": 1}, None),
        (1e30, None),
        ("1e30", None),
        (10**40, None),
    ],
)
def test_to_cents(amount: Any, cents: int | None) -> None:
    result = to_cents(amount)
    assert result == cents
    assert result is None or type(result) is int


def _decimal_cents(amount: int | float) -> int | None:
    """What to_cents computes, the slow way: Decimal of the shortest repr, times 100, rounded half up."""
    try:
        return int((Decimal(repr(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation:
        return None


@settings(max_examples=2000)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.decimals(min_value=-(10**9), max_value=10**9, places=4).map(float),
        st.integers(min_value=-(10**30), max_value=10**30),
    )
)
def test_to_cents_is_decimal_arithmetic_on_the_amount_as_written(amount: int | float) -> None:
    # The fast paths (integer arithmetic on a float's repr, int * 100) agree with Decimal, exponents included.
    result = to_cents(amount)
    assert result == _decimal_cents(amount)
    assert result is None or type(result) is int


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        (2.675, 268),
        (-2.675, -268),
        (0.005, 1),
        (-0.005, -1),
        (-0.0, 0),
        (1e16, 10**18),
        (1.5e-05, 0),
        (10**25, 10**27),
        (10**26, None),
    ],
)
def test_to_cents_rounds_half_away_from_zero_at_the_edges(amount: int | float, cents: int | None) -> None:
    assert to_cents(amount) == cents


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2020-01-01", JAN_2020),
        ("2020-01-01T00:00:00Z", JAN_2020),
        ("2020-01-01T00:00:00.999Z", JAN_2020),
        ("2020-01-01T00:00", JAN_2020),
        ("2020-01-01 00:00:00", JAN_2020),
        ("2020-01-01T02:00:00+02:00", JAN_2020),
        ("2020-01-01T02:00:00+0200", JAN_2020),
        ("2019-12-31T19:00:00-05:00", JAN_2020),
        ("2020-13-01", None),
        ("2020-01-01T24:00:00Z", None),
        ("20200101", None),
        ("2020", None),
        ("01/01/2020", None),
        ("2020-01-01T00:00:00Z trailing", None),
        ("", None),
    ],
)
def test_parse_iso_datetime(value: str, seconds: int | None) -> None:
    assert parse_iso_datetime(value) == seconds


@pytest.mark.parametrize(("seconds", "whole"), [(0.0, 0), (1_700_000_000.999, 1_700_000_000), (5, 5)])
def test_to_unix_seconds(seconds: float, whole: int) -> None:
    assert to_unix_seconds(seconds) == whole


def test_truncate() -> None:
    assert truncate("a" * MAX_STRING_CHARS) == "a" * 255
    assert truncate("a" * 256) == "a" * 255
    assert truncate("short") == "short"
    assert truncate("abcdef", 3) == "abc"


@pytest.mark.parametrize(
    ("key", "cleaned"),
    [
        ("plan", "plan"),
        ("utm.source", "utm_source"),
        ("$price", "_price"),
        ("a.b$c", "a_b_c"),
        ("with space-and-dash", "with space-and-dash"),
        ("k" * 191, "k" * MAX_ATTRIBUTE_NAME_CHARS),
    ],
)
def test_clean_key(key: str, cleaned: str) -> None:
    assert clean_key(key) == cleaned


def test_flatten() -> None:
    values = {
        "a": 1,
        "b": {"c": "x", "d": {"e": True}, "l": [1], "n": None},
        "list": [{"x": 1}],
        "none": None,
        "f.g": 2.5,
        "empty": {},
    }
    assert list(flatten(values)) == [("a", 1), ("b_c", "x"), ("b_d_e", True), ("f_g", 2.5)]


@pytest.mark.parametrize(
    ("value", "data_type"),
    [(True, "boolean"), (False, "boolean"), (3, "integer"), (3.5, "float"), ("x", "string")],
)
def test_data_type_of(value: Any, data_type: str) -> None:
    assert data_type_of(value) == data_type
