"""IntercomSender over httpx.MockTransport scripted like Intercom: contact resolution, data attributes, events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from intercom_sidecar.config import Config
from intercom_sidecar.errors import PermanentError, RetryableError, ThrottledError
from intercom_sidecar.intercom.client import IntercomClient
from intercom_sidecar.intercom.sender import IntercomSender
from intercom_sidecar.mapping import ContactRef, CreateDataEvent, Plan, UpsertContact, map_event
from intercom_sidecar.model.events import Event, Identify, Track

NOW = 1_700_000_000.0
ALREADY_EXISTS = "A contact matching those details already exists with id=abc"

Route = tuple[str, str]


def ok(payload: Any = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=payload) if payload is not None else httpx.Response(status)


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    envelope = {"type": "error.list", "request_id": "req-1", "errors": [{"code": code, "message": message}]}
    return httpx.Response(status, json=envelope, headers=headers)


def attribute(name: str, *, custom: bool = True) -> dict[str, Any]:
    return {"type": "data_attribute", "name": name, "full_name": f"custom_attributes.{name}", "custom": custom}


def attribute_list(*names: str) -> httpx.Response:
    standard = [attribute(name, custom=False) for name in ("name", "email", "external_id")]
    return ok({"type": "list", "data": [*standard, *(attribute(name) for name in names)]})


class FakeIntercom:
    """Answers each request from a per-route script (first in, first out). An unscripted route fails the test."""

    def __init__(self) -> None:
        self.script: dict[Route, list[httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *responses: httpx.Response) -> None:
        self.script.setdefault((method, path), []).extend(responses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queued = self.script.get((request.method, request.url.path))
        if not queued:
            raise AssertionError(f"unexpected request: {request.method} {request.url}")
        return queued.pop(0)

    @property
    def calls(self) -> list[str]:
        return [f"{request.method} {request.url.path}" for request in self.requests]

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(request.content)
            for request in self.requests
            if (request.method, request.url.path) == (method, path)
        ]

    def assert_script_used(self) -> None:
        leftover = {route: responses for route, responses in self.script.items() if responses}
        assert not leftover, f"scripted answers never asked for: {leftover}"


@pytest.fixture
def intercom() -> FakeIntercom:
    return FakeIntercom()


@pytest.fixture
async def sender(intercom: FakeIntercom, config_factory: Callable[..., Config]) -> AsyncIterator[IntercomSender]:
    client = IntercomClient(config_factory().intercom, transport=httpx.MockTransport(intercom))
    yield IntercomSender(client, config_factory().intercom, clock=lambda: NOW)
    await client.aclose()
    intercom.assert_script_used()


def mapped_plan(user_id: str, call: Identify | Track) -> Plan:
    event = Event(
        message_id="m1", user_id=user_id, anonymous_id=None, timestamp=NOW, call=call, context={}, integrations={}
    )
    plan = map_event(event)
    assert isinstance(plan, Plan)
    return plan


def identify_plan(user_id: str = "u1", **traits: Any) -> Plan:
    return mapped_plan(user_id, Identify(traits=traits))


def upsert_plan(types: dict[str, str], external_id: str = "u1") -> Plan:
    body = {"role": "user", "external_id": external_id}
    step = UpsertContact(contact=ContactRef(external_id=external_id, email=None), body=body, attribute_types=types)
    return Plan(steps=(step,))


def track_plan(user_id: str = "u1", **properties: Any) -> Plan:
    return mapped_plan(user_id, Track(event="Order Completed", properties=properties))


# --- contacts ---


async def test_create_caches_the_id_so_the_next_upsert_is_one_put(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", ok({"type": "contact", "id": "c1"}))
    intercom.on("PUT", "/contacts/c1", ok({"type": "contact", "id": "c1"}))
    plan = identify_plan(name="Ada")

    await sender.send(plan)
    await sender.send(plan)

    assert intercom.calls == ["POST /contacts", "PUT /contacts/c1"], "no custom attributes: no attribute lookup"
    body = {"role": "user", "external_id": "u1", "name": "Ada", "last_seen_at": int(NOW)}
    assert intercom.bodies("POST", "/contacts") == [body]
    assert intercom.bodies("PUT", "/contacts/c1") == [body]


async def test_conflict_updates_the_existing_contact(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", error(409, "conflict", ALREADY_EXISTS))
    intercom.on("PUT", "/contacts/abc", ok({"type": "contact", "id": "abc"}), ok({"type": "contact", "id": "abc"}))
    plan = identify_plan(email="ada@example.com")

    await sender.send(plan)
    await sender.send(plan)  # the id learnt from the 409 is cached

    assert intercom.calls == ["POST /contacts", "PUT /contacts/abc", "PUT /contacts/abc"]
    assert intercom.bodies("PUT", "/contacts/abc")[0] == intercom.bodies("POST", "/contacts")[0]


async def test_conflict_without_an_id_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", error(409, "conflict", "A contact matching those details already exists"))

    with pytest.raises(PermanentError) as caught:
        await sender.send(identify_plan())

    assert (caught.value.status, caught.value.code, caught.value.endpoint) == (409, "conflict", "POST /contacts")


async def test_cached_id_answering_404_is_forgotten_and_created_again(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("POST", "/contacts", ok({"type": "contact", "id": "c1"}), ok({"type": "contact", "id": "c2"}))
    intercom.on("PUT", "/contacts/c1", error(404, "not_found", "User Not Found"))
    intercom.on("PUT", "/contacts/c2", ok({"type": "contact", "id": "c2"}))
    plan = identify_plan()

    await sender.send(plan)  # creates c1
    await sender.send(plan)  # c1 is gone (merged or deleted): create again -> c2
    await sender.send(plan)  # c2 is cached now

    assert intercom.calls == ["POST /contacts", "PUT /contacts/c1", "POST /contacts", "PUT /contacts/c2"]


async def test_cached_id_failing_otherwise_keeps_the_cache(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", ok({"type": "contact", "id": "c1"}))
    intercom.on("PUT", "/contacts/c1", error(503, "service_unavailable", "try later"), ok({"id": "c1"}))
    plan = identify_plan()
    await sender.send(plan)

    with pytest.raises(RetryableError) as caught:
        await sender.send(plan)
    await sender.send(plan)

    assert (caught.value.status, caught.value.endpoint) == (503, "PUT /contacts/{id}")
    assert intercom.calls[-2:] == ["PUT /contacts/c1", "PUT /contacts/c1"]


async def test_identities_are_cached_separately(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", ok({"id": "c1"}), ok({"id": "c2"}))
    intercom.on("PUT", "/contacts/c1", ok({"id": "c1"}))

    await sender.send(identify_plan("u1"))
    await sender.send(identify_plan("u2"))
    await sender.send(identify_plan("u1"))

    assert intercom.calls == ["POST /contacts", "POST /contacts", "PUT /contacts/c1"]


async def test_create_refused_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", error(400, "parameter_invalid", "Email is invalid"))

    with pytest.raises(PermanentError) as caught:
        await sender.send(identify_plan(email="not-an-email"))

    assert caught.value.reason == "intercom 400 parameter_invalid: Email is invalid (POST /contacts)"


# --- data attributes ---


async def test_attributes_listed_once_and_missing_ones_created_once(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("plan"))
    intercom.on("POST", "/data_attributes", *(ok(attribute(name)) for name in ("seats", "trial_ends", "score")))
    intercom.on("POST", "/contacts", ok({"id": "c1"}))
    intercom.on("PUT", "/contacts/c1", ok({"id": "c1"}), ok({"id": "c1"}))
    types = {"plan": "string", "seats": "integer", "trial_ends": "date"}

    await sender.send(upsert_plan(types))
    await sender.send(upsert_plan(types))
    await sender.send(upsert_plan({**types, "score": "float"}))

    assert intercom.calls == [
        "GET /data_attributes",
        "POST /data_attributes",
        "POST /data_attributes",
        "POST /contacts",
        "PUT /contacts/c1",
        "POST /data_attributes",
        "PUT /contacts/c1",
    ]
    assert intercom.bodies("POST", "/data_attributes") == [
        {"name": "seats", "model": "contact", "data_type": "integer"},
        {"name": "trial_ends", "model": "contact", "data_type": "date"},
        {"name": "score", "model": "contact", "data_type": "float"},
    ]


async def test_identify_traits_create_typed_attributes(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", attribute_list())
    intercom.on("POST", "/data_attributes", *(ok(attribute(name)) for name in ("vip", "ends")))
    intercom.on("POST", "/contacts", ok({"id": "c1"}))

    await sender.send(identify_plan(vip=True, ends="2024-01-01"))

    assert intercom.bodies("POST", "/data_attributes") == [
        {"name": "vip", "model": "contact", "data_type": "boolean"},
        {"name": "ends", "model": "contact", "data_type": "date"},
    ]
    assert intercom.bodies("POST", "/contacts")[0]["custom_attributes"] == {"vip": True, "ends": 1_704_067_200}


async def test_attribute_created_meanwhile_by_someone_else(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", attribute_list(), attribute_list("plan"))
    intercom.on("POST", "/data_attributes", error(400, "parameter_invalid", "You already have 'plan' in your data"))
    intercom.on("POST", "/contacts", ok({"id": "c1"}))

    await sender.send(upsert_plan({"plan": "string"}))

    assert intercom.calls == ["GET /data_attributes", "POST /data_attributes", "GET /data_attributes", "POST /contacts"]


async def test_attribute_listing_asks_for_the_model(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("plan"))
    intercom.on("POST", "/contacts", ok({"id": "c1"}))

    await sender.send(upsert_plan({"plan": "string"}))

    assert intercom.requests[0].url.params["model"] == "contact"


async def test_traits_named_like_standard_attributes_are_left_out(
    sender: IntercomSender, intercom: FakeIntercom
) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("plan"))
    intercom.on("POST", "/contacts", ok({"id": "c1"}))
    step = UpsertContact(
        contact=ContactRef(external_id="u1", email=None),
        body={"role": "user", "external_id": "u1", "custom_attributes": {"plan": "pro", "Email": "x@example.com"}},
        attribute_types={"plan": "string", "Email": "string"},
    )

    await sender.send(Plan(steps=(step,)))

    assert intercom.calls == ["GET /data_attributes", "POST /contacts"], "no attempt to create `Email`"
    assert intercom.bodies("POST", "/contacts")[0]["custom_attributes"] == {"plan": "pro"}


async def test_attributes_are_written_with_intercoms_spelling(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", attribute_list("Plan"))
    intercom.on("POST", "/contacts", ok({"id": "c1"}))
    step = UpsertContact(
        contact=ContactRef(external_id="u1", email=None),
        body={"role": "user", "external_id": "u1", "custom_attributes": {"plan": "pro"}},
        attribute_types={"plan": "string"},
    )

    await sender.send(Plan(steps=(step,)))

    assert intercom.calls == ["GET /data_attributes", "POST /contacts"], "`plan` exists as `Plan`: nothing to create"
    assert intercom.bodies("POST", "/contacts")[0]["custom_attributes"] == {"Plan": "pro"}


async def test_attribute_refused_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    name_rule = "Your name for this attribute must only contain alphanumeric characters, currency symbols, and hyphens"
    intercom.on("GET", "/data_attributes", attribute_list(), attribute_list())
    intercom.on("POST", "/data_attributes", error(400, "parameter_invalid", name_rule))

    with pytest.raises(PermanentError) as caught:
        await sender.send(upsert_plan({"bad/name": "string"}))

    assert (caught.value.status, caught.value.endpoint) == (400, "POST /data_attributes")
    assert "POST /contacts" not in intercom.calls


async def test_failed_listing_is_not_cached(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("GET", "/data_attributes", error(500, "server_error", "oops"), attribute_list("plan"))
    intercom.on("POST", "/contacts", ok({"id": "c1"}))

    with pytest.raises(RetryableError):
        await sender.send(upsert_plan({"plan": "string"}))
    await sender.send(upsert_plan({"plan": "string"}))

    assert intercom.calls == ["GET /data_attributes", "GET /data_attributes", "POST /contacts"]


# --- data events ---


async def test_track_posts_one_event(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/events", ok(status=202))

    await sender.send(track_plan(revenue=19.99, sku="A-1"))

    assert intercom.calls == ["POST /events"]
    assert intercom.bodies("POST", "/events") == [
        {
            "event_name": "Order Completed",
            "created_at": int(NOW),
            "user_id": "u1",
            "metadata": {"price": {"amount": 1999, "currency": "usd"}, "sku": "A-1"},
        }
    ]


async def test_event_for_an_unknown_user_is_permanent(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/events", error(404, "not_found", "User Not Found"))

    with pytest.raises(PermanentError) as caught:
        await sender.send(track_plan())

    assert caught.value.reason == "intercom 404 not_found: User Not Found (POST /events)"


async def test_throttled_event_carries_the_reset(sender: IntercomSender, intercom: FakeIntercom) -> None:
    headers = {"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 10)}
    intercom.on("POST", "/events", error(429, "rate_limit_exceeded", "Exceeded rate limit", headers))

    with pytest.raises(ThrottledError) as caught:
        await sender.send(track_plan())

    assert caught.value.retry_after == 10.0


async def test_steps_run_in_order(sender: IntercomSender, intercom: FakeIntercom) -> None:
    intercom.on("POST", "/contacts", ok({"id": "c1"}))
    intercom.on("POST", "/events", ok(status=202))
    contact = ContactRef(external_id="u1", email=None)
    plan = Plan(
        steps=(
            UpsertContact(contact=contact, body={"role": "user", "external_id": "u1"}, attribute_types={}),
            CreateDataEvent(contact=contact, body={"event_name": "x", "created_at": 1, "user_id": "u1"}),
        )
    )

    await sender.send(plan)

    assert intercom.calls == ["POST /contacts", "POST /events"]
