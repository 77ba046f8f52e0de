"""JSON from callers, read strictly: the CLI's input files and the Segment-compatible HTTP API both come through here.

Stricter than `json.loads` in three ways, each a `StrictJsonError` naming what it found: an object with the same key
twice (parsers disagree on which one wins, so the event a caller meant is unknowable), `NaN` and `Infinity` (Python
accepts them, JSON does not), and numbers too large for a double (`1e999` would become infinity).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["DECODER", "StrictJsonError", "loads"]


class StrictJsonError(ValueError):
    """Valid JSON syntax that is still refused: a duplicate key, a non-number constant, an out-of-range number."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJsonError(f"duplicate key {key!r} in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError(f"{text} is out of range for a number")
    return value


DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_float=_finite)
"""For `raw_decode` (values one after another); `loads` for a whole document."""


def loads(text: str) -> Any:
    """Like `json.loads`; raises `json.JSONDecodeError` for bad syntax and `StrictJsonError` for the above (both
    are ValueErrors)."""
    return DECODER.decode(text)
