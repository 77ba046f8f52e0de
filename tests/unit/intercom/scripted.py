"""A scripted Intercom for the executor tests: an `httpx.MockTransport` handler answering from a per-route script.

Every request body is checked against Intercom's OpenAPI description (`tests/openapi_schemas.py`), so the
exact bodies asserted by the tests are also bodies Intercom accepts. The answers imitate Intercom's: objects
with `type` and `id`, and the `error.list` envelope for errors.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.mapping import Plan, Skip, map_event
from intercom_sidecar.model.events import Alias, Call, Event, Group, Identify, JsonObject, Track
from tests.openapi_schemas import validate_request

__all__ = [
    "ALREADY_EXISTS",
    "NOW",
    "USER_NOT_FOUND",
    "FakeIntercom",
    "alias_plan",
    "attribute",
    "attribute_list",
    "company",
    "contact",
    "error",
    "group_plan",
    "identify_plan",
    "ok",
    "plan_for",
    "track_plan",
]

NOW = 1_700_000_000.0
"""The time every event happens at unless a test says otherwise (also the fake clock's start)."""

ALREADY_EXISTS = "A contact matching those details already exists with id=abc"

Route = tuple[str, str]


def ok(payload: Any = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=payload) if payload is not None else httpx.Response(status)


def contact(contact_id: str, role: str = "user") -> httpx.Response:
    return ok({"type": "contact", "id": contact_id, "role": role})


def company(intercom_id: str, company_id: str) -> httpx.Response:
    return ok({"type": "company", "id": intercom_id, "company_id": company_id})


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    envelope = {"type": "error.list", "request_id": "req-1", "errors": [{"code": code, "message": message}]}
    return httpx.Response(status, json=envelope, headers=headers)


USER_NOT_FOUND = (404, "not_found", "User Not Found")


def attribute(name: str, *, custom: bool = True, model: str = "contact") -> dict[str, Any]:
    return {
        "type": "data_attribute",
        "name": name,
        "full_name": f"custom_attributes.{name}" if custom else name,
        "model": model,
        "custom": custom,
    }


def attribute_list(*names: str, model: str = "contact") -> httpx.Response:
    standard = [attribute(name, custom=False, model=model) for name in ("name", "email", "external_id")]
    return ok({"type": "list", "data": [*standard, *(attribute(name, model=model) for name in names)]})


class FakeIntercom:
    """Answers each request from a per-route script (first in, first out). An unscripted route fails the test."""

    def __init__(self) -> None:
        self.script: dict[Route, list[httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *responses: httpx.Response) -> None:
        self.script.setdefault((method, path), []).extend(responses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        validate_request(request.method, request.url.path, request.content)
        queued = self.script.get((request.method, request.url.path))
        if not queued:
            raise AssertionError(f"unexpected request: {request.method} {request.url}")
        return queued.pop(0)

    @property
    def calls(self) -> list[str]:
        """`METHOD /path`, with `?query` when there is one, in the order sent."""
        return [
            f"{request.method} {request.url.path}" + (f"?{request.url.query.decode()}" if request.url.query else "")
            for request in self.requests
        ]

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(request.content)
            for request in self.requests
            if (request.method, request.url.path) == (method, path)
        ]

    def forget_requests(self) -> None:
        """Start counting calls afresh (after a warm-up)."""
        self.requests.clear()

    def assert_script_used(self) -> None:
        leftover = {route: responses for route, responses in self.script.items() if responses}
        assert not leftover, f"scripted answers never asked for: {leftover}"


def plan_for(
    call: Call,
    *,
    user_id: str | None = "u1",
    anonymous_id: str | None = None,
    timestamp: float = NOW,
    context: JsonObject | None = None,
    **options: Any,
) -> Plan:
    """The plan `map_event` makes for one event (with `MappingConfig(**options)`); it must not be a Skip."""
    event = Event(
        message_id="m1",
        user_id=user_id,
        anonymous_id=anonymous_id or (None if user_id is not None else "anon-1"),  # every event has one id
        timestamp=timestamp,
        call=call,
        context=context or {},
        integrations={},
    )
    plan = map_event(event, MappingConfig(**options))
    assert not isinstance(plan, Skip), plan
    return plan


def identify_plan(user_id: str | None = "u1", *, timestamp: float = NOW, **traits: Any) -> Plan:
    return plan_for(Identify(traits=traits), user_id=user_id, timestamp=timestamp)


def track_plan(user_id: str | None = "u1", **properties: Any) -> Plan:
    return plan_for(Track(event="Order Completed", properties=properties), user_id=user_id)


def group_plan(group_id: str, user_id: str | None = "u1", **traits: Any) -> Plan:
    return plan_for(Group(group_id=group_id, traits=traits), user_id=user_id)


def alias_plan(previous_id: str, user_id: str = "u1") -> Plan:
    return plan_for(Alias(previous_id=previous_id), user_id=user_id, leads=True)
