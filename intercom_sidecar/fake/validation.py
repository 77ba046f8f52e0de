"""Checks of request bodies, answering with the errors Intercom gives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from intercom_sidecar.fake.api import ApiError
from intercom_sidecar.fake.attributes import invalid_value_message
from intercom_sidecar.fake.state import State

__all__ = ["check_custom_attributes", "check_fields", "json_object"]

# Accepted JSON types for each known body field: "str", "int", "num", "bool", "obj", "list"; "?" allows null.
_TYPE_NAMES: Final = {"str": "a string", "int": "an integer", "num": "a number", "bool": "a boolean"}


def _is(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "num":
        return isinstance(value, int | float)
    if kind == "obj":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    if kind == "id":
        return isinstance(value, str | int)
    raise AssertionError(kind)


def json_object(body: Any) -> dict[str, Any]:
    """The body as an object, or 400 (Intercom rejects bodies that are not JSON objects)."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Request body must be a JSON object")
    return body


def check_fields(body: Mapping[str, Any], spec: Mapping[str, str], required: Iterable[str] = ()) -> None:
    """Reject unknown keys (``bad 'x' parameter``), missing required ones and values of the wrong type."""
    for key in body:
        if key not in spec:
            raise ApiError(400, "bad_request", f"bad '{key}' parameter")
    for key in required:
        if body.get(key) in (None, ""):
            raise ApiError(400, "parameter_not_found", f"{key} not specified")
    for key, value in body.items():
        kind = spec[key]
        nullable = kind.endswith("?")
        kind = kind.rstrip("?")
        if value is None and nullable:
            continue
        if not _is(kind, value):
            shown = _TYPE_NAMES.get(kind, f"an {'object' if kind == 'obj' else 'array'}")
            raise ApiError(400, "parameter_invalid", f"{key} must be {shown}")


def check_custom_attributes(state: State, model: str, values: Mapping[str, Any] | None) -> None:
    """Every key must name a custom attribute created for ``model``, and every value fit its type."""
    for name, value in (values or {}).items():
        attr = state.custom_attribute(model, name)
        if attr is None or attr.archived:
            raise ApiError(400, "parameter_invalid", f"Custom attribute '{name}' does not exist")
        problem = invalid_value_message(attr, value)
        if problem is not None:
            raise ApiError(400, "parameter_invalid", problem)
