"""The input of `intercom-sidecar send`: Segment JSON events as NDJSON, JSON objects (pretty-printed or not, one or
several) or a JSON array, turned into `Event` messages.

A problem with one event (bad JSON on an NDJSON line, not a Segment event) comes out as a message naming the source
and the line (or the array position), and the other events are still read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.model import strict_json
from intercom_sidecar.model.segment_json import SegmentJsonError, event_from_segment_json

__all__ = ["read_events"]

_WHITESPACE = re.compile(r"\s*")


def read_events(text: str, source: str) -> Iterator[event_pb2.Event | str]:
    """Events from `text`, in order; a problem comes out as a one-line message string instead of an event."""
    values, problems = _json_values(text, source)
    yield from problems
    for where, value in values:
        try:
            yield event_from_segment_json(value)
        except SegmentJsonError as exc:
            yield f"{where}: {exc}"


def _json_values(text: str, source: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """(where, value) pairs and problems. `where` is `source:line` (`source: event N` for an array's items)."""
    if text.lstrip().startswith("["):
        try:
            items = strict_json.loads(text)
        except ValueError as exc:
            return [], [f"{source}: not valid JSON: {exc}"]
        return [(f"{source}: event {n}", item) for n, item in enumerate(items, 1)], []
    values, problems = _ndjson(text)
    if problems:  # not NDJSON: perhaps JSON objects spread over several lines
        concatenated = _concatenated(text)
        if not isinstance(concatenated, str):
            return [(f"{source}:{line}", value) for line, value in concatenated], []
        if not values or problems[0][0] < values[0][0]:
            # Not even the first line is an event by itself: broken multi-line JSON. One message, not one per line.
            return [], [f"{source}:{concatenated}"]
    return [(f"{source}:{line}", value) for line, value in values], [
        f"{source}:{line}: {problem}" for line, problem in problems
    ]


def _ndjson(text: str) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """(line, value) for each line that parses, (line, problem) for each that does not; blank lines skipped."""
    values: list[tuple[int, Any]] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            values.append((number, strict_json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append((number, f"not valid JSON: {exc.msg} at column {exc.colno}"))
        except strict_json.StrictJsonError as exc:
            problems.append((number, f"not accepted: {exc}"))
    return values, problems


def _concatenated(text: str) -> list[tuple[int, Any]] | str:
    """(line, value) for JSON values one after another, each on as many lines as it likes; if `text` is not
    that, `line: problem` for the first problem."""
    values: list[tuple[int, Any]] = []
    line, counted = 1, 0
    position = _skip_whitespace(text, 0)
    while position < len(text):
        try:
            value, end = strict_json.DECODER.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            return f"{exc.lineno}: not valid JSON: {exc.msg} at column {exc.colno}"
        except strict_json.StrictJsonError as exc:
            return f"{text.count(chr(10), 0, position) + 1}: not accepted: {exc}"
        line, counted = line + text.count("\n", counted, position), position
        values.append((line, value))
        position = _skip_whitespace(text, end)
    return values


def _skip_whitespace(text: str, position: int) -> int:
    match = _WHITESPACE.match(text, position)
    return match.end() if match else position
