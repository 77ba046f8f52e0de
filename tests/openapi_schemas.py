"""Check requests and responses against Intercom's OpenAPI description (v2.16, third_party/intercom-openapi).

``validate_request(method, path, body)`` and ``validate_response(method, path, status, body)`` take a
concrete path (``/contacts/abc``), find its template (``/contacts/{contact_id}``), and validate the JSON
body with the OpenAPI 3.0 schema validator; a mismatch raises ``AssertionError`` saying where and why.
``validate_ledger_requests(entries)`` checks every request a fake Intercom's ledger recorded.

The description is loaded once. A few of its schemas contradict the description's own prose; those are
corrected by :data:`ERRATA` (each entry says why) before anything is validated.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import FormatChecker
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS30Validator, oas30_format_checker

__all__ = [
    "ERRATA",
    "SPEC_PATH",
    "find_operation",
    "load_spec",
    "validate_ledger_requests",
    "validate_request",
    "validate_response",
]

SPEC_PATH = Path(__file__).resolve().parent.parent / "third_party" / "intercom-openapi" / "api.intercom.io.yaml"

_SCALAR_VALUE: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
_EVENT_METADATA_VALUE: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "object", "required": ["url", "value"], "properties": {"url": {"type": "string"}}},
        {"type": "object", "required": ["amount", "currency"], "properties": {"amount": {"type": "integer"}}},
    ]
}


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(schemas: dict[str, Any]) -> None:
        node = schemas
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)

    return apply


#: (why, fix) pairs applied to ``components.schemas`` after loading.
ERRATA: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    (
        "POST /events: the endpoint's description documents metadata values that are numbers, dates "
        "(Unix timestamps), links, rich links {url, value} and monetary amounts {amount, currency}, "
        "but the schema allows only strings",
        _set(
            ["create_data_event_request", "properties", "metadata", "additionalProperties"],
            _EVENT_METADATA_VALUE,
        ),
    ),
    (
        "POST /companies: the schema's own example of custom_attributes holds booleans and numbers "
        "(paid_subscriber: true, monthly_spend: 155.5), but additionalProperties allows only strings",
        _set(
            ["create_or_update_company_request", "properties", "custom_attributes", "additionalProperties"],
            _SCALAR_VALUE,
        ),
    ),
    (
        "company: the same custom attributes come back in the company object",
        _set(["company", "properties", "custom_attributes", "additionalProperties"], _SCALAR_VALUE),
    ),
]


@functools.cache
def load_spec() -> dict[str, Any]:
    """The OpenAPI description, parsed once, with :data:`ERRATA` applied."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as handle:
        spec: dict[str, Any] = yaml.load(handle, Loader=loader)
    for _why, fix in ERRATA:
        fix(spec["components"]["schemas"])
    return spec


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str, int]]:
    result = []
    for template in load_spec()["paths"]:
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        result.append((re.compile(pattern), template, template.count("{")))
    return result


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The path template and operation object for ``method path`` (literal segments beat parameters)."""
    path = path.split("?", 1)[0]
    paths = load_spec()["paths"]
    candidates = [
        (params, template)
        for pattern, template, params in _templates()
        if pattern.fullmatch(path) and method.lower() in paths[template]
    ]
    if not candidates:
        raise AssertionError(f"{method.upper()} {path} is not an operation of the Intercom API description")
    _, template = min(candidates)
    return template, paths[template][method.lower()]


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    # Intercom's own examples give relative URLs ("/contacts/1/tags") for format: uri; leave those alone.
    checker.checkers = {
        name: check for name, check in oas30_format_checker.checkers.items() if not name.startswith(("uri", "iri"))
    }

    def is_uuid(instance: object) -> bool:
        return not isinstance(instance, str) or bool(uuid.UUID(instance))

    checker.checkers["uuid"] = (is_uuid, (ValueError,))
    return checker


@functools.cache
def _validator(method: str, template: str, part: str) -> Any:
    """A validator for the request body (``part`` ``request``) or the response to one status."""
    operation = load_spec()["paths"][template][method]
    if part == "request":
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
    else:
        schema = _response_content(method, template, int(part))["application/json"]["schema"]
    root = {**schema, "components": load_spec()["components"]}
    return OAS30Validator(root, format_checker=_format_checker())


def _response_content(method: str, template: str, status: int) -> Mapping[str, Any]:
    responses = load_spec()["paths"][template][method]["responses"]
    response = responses.get(str(status)) or responses.get(f"{status // 100}XX") or responses.get("default")
    if response is None:
        if status >= 400:
            # Intercom answers every error with its error envelope (components/schemas/error).
            return {"application/json": {"schema": {"$ref": "#/components/schemas/error"}}}
        documented = ", ".join(sorted(responses))
        raise AssertionError(f"{method.upper()} {template} documents no {status} response (only {documented})")
    content: Mapping[str, Any] = response.get("content", {})
    return content


def _parse(body: Any, what: str) -> Any:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            return json.loads(body) if body.strip() else None
        except ValueError:
            raise AssertionError(f"{what} is not JSON: {body[:200]!r}") from None
    return body


def _check(validator: Any, instance: Any, what: str) -> None:
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        shown = json.dumps(error.instance, default=str)
        if len(shown) > 300:
            shown = shown[:300] + "..."
        raise AssertionError(
            f"{what} does not match the Intercom API description at {error.json_path}: "
            f"{error.message[:500]} (value: {shown})"
        )


def validate_request(method: str, path: str, body: Any) -> None:
    """Check a request body (JSON text, bytes, parsed JSON or ``None``) against the operation's schema."""
    template, operation = find_operation(method, path)
    what = f"{method.upper()} {path} request body ({template})"
    parsed = _parse(body, what)
    request_body = operation.get("requestBody")
    if request_body is None or "application/json" not in request_body.get("content", {}):
        if parsed not in (None, {}):
            raise AssertionError(f"{what}: the operation takes no JSON body, got {parsed!r}")
        return
    if parsed is None:
        if request_body.get("required"):
            raise AssertionError(f"{what}: a body is required")
        return
    _check(_validator(method.lower(), template, "request"), parsed, what)


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Check a response body against the schema documented for ``status`` (errors: the error envelope)."""
    template, _ = find_operation(method, path)
    what = f"{method.upper()} {path} {status} response ({template})"
    content = _response_content(method.lower(), template, status)
    parsed = _parse(body, what)
    if "application/json" not in content:
        if parsed not in (None, ""):
            raise AssertionError(f"{what}: documented without a body, got {parsed!r}")
        return
    if parsed is None:
        raise AssertionError(f"{what}: documented with a JSON body, got none")
    _check(_validator(method.lower(), template, str(status)), parsed, what)


def _field(entry: Any, name: str) -> Any:
    return entry[name] if isinstance(entry, Mapping) else getattr(entry, name)


def validate_ledger_requests(entries: Iterable[Any], *, skip: Callable[[Any], bool] | None = None) -> int:
    """Validate the request of every ledger entry (objects or dicts with method, path, body).

    ``skip`` can leave out entries a test sent invalid on purpose. Returns how many were checked.
    """
    checked = 0
    for entry in entries:
        if skip is not None and skip(entry):
            continue
        validate_request(_field(entry, "method"), _field(entry, "path"), _field(entry, "body"))
        checked += 1
    return checked
