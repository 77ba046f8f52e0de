"""Fuzzing the whole path an event takes: bytes -> parse -> validate -> map -> the requests sent to Intercom.

Properties, for any bytes at all:
- nothing raises but `InvalidEventError` (whose field and problem are non-empty, the field a path in the event);
- a valid event becomes a `Plan` or a `Skip` with a reason;
- executing the plan (against the fake Intercom, in memory) sends only request bodies that match Intercom's
  OpenAPI 2.16 description, and never meets a bug of ours (`InternalError` or any unexpected exception).

`make test` runs a few hundred examples; `make fuzz` (HYPOTHESIS_PROFILE=fuzz) tens of thousands.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from intercom_sidecar.config import IntercomConfig, MappingConfig, Secret
from intercom_sidecar.errors import DeliveryError, InternalError, InvalidEventError
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.http_server import Request
from intercom_sidecar.intercom.client import IntercomClient
from intercom_sidecar.intercom.sender import IntercomSender
from intercom_sidecar.mapping import Plan, Skip, map_event
from intercom_sidecar.model.from_proto import DecodeLimits, event_from_bytes
from tests.fuzz.strategies import NOW, event_bytes, events
from tests.openapi_schemas import validate_request

LIMITS = DecodeLimits()
FIELD_ROOTS = frozenset(
    {"event", "message_id", "user_id", "anonymous_id", "timestamp", "sent_at", "context", "integrations",
     "trace_context", "call", "identify", "track", "page", "screen", "group", "alias"}
)  # fmt: skip
TOKEN = "tok_fuzz_0123456789"

mapping_options = st.builds(
    MappingConfig,
    page_mode=st.sampled_from(["ignore", "event", "last_seen"]),
    leads=st.booleans(),
    create_missing_contacts=st.booleans(),
    identity_secret=st.one_of(st.none(), st.just(Secret("s3cret"))),
)


class InMemoryIntercom(httpx.AsyncBaseTransport):
    """The fake Intercom's request handling without its HTTP server; records each body that breaks the schema."""

    def __init__(self) -> None:
        self._fake = FakeIntercom(token=TOKEN, limit_per_window=10**9, clock=lambda: NOW, seed=1)
        self.sent: list[tuple[str, str, bytes]] = []
        self.schema_errors: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.sent.append((request.method, request.url.path, body))
        try:
            validate_request(request.method, request.url.path, body)
        except AssertionError as error:
            self.schema_errors.append(str(error))
        query = request.url.query.decode()
        target = request.url.path + (f"?{query}" if query else "")
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = await self._fake.handle(Request(request.method, target, request.url.path, query, headers, body))
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)


def check_invalid(error: InvalidEventError) -> None:
    assert error.field and error.problem, error
    root = error.field.split(".", 1)[0].split("[", 1)[0]
    assert root in FIELD_ROOTS, f"{error.field!r} is not a field of the event"


async def deliver(plan: Plan) -> InMemoryIntercom:
    intercom = InMemoryIntercom()
    config = IntercomConfig(token=Secret(TOKEN), base_url="https://api.intercom.test")
    client = IntercomClient(config, transport=intercom)
    try:
        await IntercomSender(client, config, clock=lambda: NOW).send(plan)
    except InternalError:
        raise
    except DeliveryError:
        pass  # Intercom (the fake) refused something: an outcome, not a bug
    finally:
        await client.aclose()
    return intercom


def run_path(payload: bytes, options: MappingConfig) -> None:
    try:
        event, _ = event_from_bytes(payload, now=NOW, limits=LIMITS)
        plan = map_event(event, options)
    except InvalidEventError as error:
        check_invalid(error)
        note(f"invalid {error.field.split('.', 1)[0]}")
        return
    if isinstance(plan, Skip):
        assert plan.reason
        note("skipped")
        return
    note(f"sent {event.type}")
    assert plan.steps, "a plan that sends nothing should be a Skip"
    intercom = asyncio.run(deliver(plan))
    assert not intercom.schema_errors, intercom.schema_errors[0]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(payload=event_bytes, options=mapping_options)
def test_any_bytes_are_an_invalid_event_or_requests_intercom_accepts(payload: bytes, options: MappingConfig) -> None:
    run_path(payload, options)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(message=events(plausible=True), options=mapping_options)
def test_plausible_events_are_invalid_or_requests_intercom_accepts(message: Any, options: MappingConfig) -> None:
    run_path(message.SerializeToString(), options)
