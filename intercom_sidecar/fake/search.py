"""``POST /contacts/search`` query evaluation, following the rules in Intercom's API description."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from intercom_sidecar.fake.api import ApiError
from intercom_sidecar.fake.state import Contact, State

__all__ = ["compile_query", "search_contacts"]

Predicate = Callable[[Contact], bool]

_DATE_FIELDS: Final = frozenset({"created_at", "updated_at", "signed_up_at", "last_seen_at"})
_NULL_FIELDS: Final = frozenset(
    {
        "last_contacted_at",
        "last_replied_at",
        "last_email_opened_at",
        "last_email_clicked_at",
        "language_override",
        "browser",
        "browser_language",
        "os",
        "location.country",
        "location.region",
        "location.city",
        "segment_id",
        "tag_id",
    }
)
_FALSE_FIELDS: Final = frozenset({"marked_email_as_spam", "has_hard_bounced"})
_PLAIN_FIELDS: Final = frozenset(
    {"id", "role", "name", "avatar", "owner_id", "email", "phone", "external_id", "unsubscribed_from_emails"}
)
_DAY: Final = 86_400
_MAX_FILTERS: Final = 15
_MAX_DEPTH: Final = 2


def _invalid(message: str) -> ApiError:
    return ApiError(400, "parameter_invalid", message)


def _getter(state: State, field: str) -> tuple[Callable[[Contact], Any], bool]:
    """How to read ``field`` from a contact, and whether it is a date field."""
    if field in _PLAIN_FIELDS or field in _DATE_FIELDS:
        return (lambda c: getattr(c, field)), field in _DATE_FIELDS
    if field == "email_domain":
        return (lambda c: c.email.rpartition("@")[2] if c.email and "@" in c.email else None), False
    if field in _NULL_FIELDS:
        return (lambda c: None), field.endswith("_at")
    if field in _FALSE_FIELDS:
        return (lambda c: False), False
    if field.startswith("custom_attributes."):
        name = field.removeprefix("custom_attributes.")
        attr = state.custom_attribute("contact", name)
        if attr is None:
            raise _invalid(f"Custom attribute '{name}' does not exist")
        return (lambda c: c.custom_attributes.get(name)), attr.data_type in ("date", "datetime")
    raise _invalid(f"'{field}' is not a searchable field")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _invalid(f"{value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _invalid(f"{value!r} is not a number") from None


def _same(left: Any, right: Any, field: str) -> bool:
    if field == "email" and isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    if isinstance(left, int | float) and not isinstance(left, bool) and isinstance(right, str):
        try:
            return float(left) == float(right)
        except ValueError:
            return False
    return bool(left == right)


def _single(state: State, query: dict[str, Any]) -> Predicate:
    field, operator, value = query.get("field"), query.get("operator"), query.get("value")
    if not isinstance(field, str) or not isinstance(operator, str):
        raise _invalid("Each search filter needs a field and an operator")
    get, is_date = _getter(state, field)
    if is_date:
        if operator not in ("=", ">", "<"):
            raise _invalid(f"Operator '{operator}' is not supported on the date field '{field}'")
        day = int(_number(value)) // _DAY * _DAY
        if operator == "=":
            return lambda c: (v := get(c)) is not None and day <= v < day + _DAY
        if operator == ">":
            return lambda c: (v := get(c)) is not None and v >= day + _DAY
        return lambda c: (v := get(c)) is not None and v < day
    if operator == "=":
        return lambda c: _same(get(c), value, field)
    if operator == "!=":
        return lambda c: not _same(get(c), value, field)
    if operator in ("IN", "NIN"):
        if not isinstance(value, list):
            raise _invalid(f"Operator '{operator}' needs an array value")
        inside: Predicate = lambda c: any(_same(get(c), v, field) for v in value)  # noqa: E731
        return inside if operator == "IN" else (lambda c: not inside(c))
    if operator in (">", "<", ">=", "<="):
        bound = _number(value)
        compare: dict[str, Callable[[float], bool]] = {
            ">": lambda v: v > bound,
            "<": lambda v: v < bound,
            ">=": lambda v: v >= bound,
            "<=": lambda v: v <= bound,
        }
        check = compare[operator]
        return lambda c: isinstance(v := get(c), int | float) and not isinstance(v, bool) and check(v)
    if operator in ("~", "!~", "^", "$"):
        if not isinstance(value, str):
            raise _invalid(f"Operator '{operator}' needs a string value")
        text = value.lower()
        string_ops: dict[str, Callable[[str], bool]] = {
            "~": lambda v: text in v,
            "!~": lambda v: text not in v,
            "^": lambda v: v.startswith(text),
            "$": lambda v: v.endswith(text),
        }
        matcher = string_ops[operator]
        return lambda c: isinstance(v := get(c), str) and matcher(v.lower())
    raise _invalid(f"Unknown operator '{operator}'")


def compile_query(state: State, query: Any, depth: int = 0) -> Predicate:
    """A predicate for a single filter or an AND/OR group (nested at most twice, 15 filters a group)."""
    if not isinstance(query, dict):
        raise _invalid("query must be an object")
    operator = query.get("operator")
    if operator not in ("AND", "OR"):
        return _single(state, query)
    if depth >= _MAX_DEPTH:
        raise _invalid("Search queries can be nested at most 2 levels deep")
    parts = query.get("value")
    if not isinstance(parts, list) or not parts:
        raise _invalid(f"{operator} needs an array of filters")
    if len(parts) > _MAX_FILTERS:
        raise _invalid("There's a limit of max 15 filters for each AND or OR group")
    predicates = [compile_query(state, part, depth + 1) for part in parts]
    if operator == "AND":
        return lambda c: all(p(c) for p in predicates)
    return lambda c: any(p(c) for p in predicates)


def search_contacts(state: State, body: dict[str, Any]) -> tuple[list[Contact], int, int, str | None]:
    """Run a search request body; return (page of contacts, total matches, per_page, next cursor)."""
    predicate = compile_query(state, body.get("query"))
    matches = [c for c in state.active_contacts() if predicate(c)]
    sort = body.get("sort")
    if isinstance(sort, dict) and isinstance(sort.get("field"), str):
        get, _ = _getter(state, sort["field"])
        descending = sort.get("order", "descending") == "descending"
        present = [c for c in matches if get(c) is not None]
        present.sort(key=lambda c: (str(type(get(c))), get(c)), reverse=descending)
        matches = present + [c for c in matches if get(c) is None]
    pagination = body.get("pagination") or {}
    try:
        per_page = int(pagination.get("per_page") or 50)
    except (TypeError, ValueError):
        per_page = 0
    if not 1 <= per_page <= 150:
        raise _invalid("per_page must be between 1 and 150")
    start = 0
    cursor = pagination.get("starting_after")
    if cursor:
        ids = [c.id for c in matches]
        if cursor not in ids:
            raise _invalid("starting_after is not a valid cursor")
        start = ids.index(cursor) + 1
    page = matches[start : start + per_page]
    next_cursor = page[-1].id if page and start + per_page < len(matches) else None
    return page, len(matches), per_page, next_cursor
