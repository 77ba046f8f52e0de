"""Fixtures: a fake Intercom on 127.0.0.1 with a fake clock, and an HTTP client that checks every exchange
against Intercom's OpenAPI description."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from intercom_sidecar.fake import FakeIntercom
from tests.openapi_schemas import validate_request, validate_response

#: Pass as ``extensions=`` on a request that is invalid on purpose: its response is still checked.
INVALID_REQUEST = {"invalid_request": True}

START = 1_700_000_000.0  # a multiple of 10: rate-limit windows start on it


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _check_exchange(response: httpx.Response) -> None:
    request = response.request
    if request.url.path.startswith("/_fake"):
        return
    await response.aread()
    if not request.extensions.get("invalid_request"):
        validate_request(request.method, request.url.path, request.content)
    validate_response(request.method, request.url.path, response.status_code, response.content)


def checked_client(fake: FakeIntercom, **kwargs: object) -> httpx.AsyncClient:
    """A client for ``fake`` sending the right headers, validating each request and response."""
    options: dict[str, object] = {"base_url": fake.url, "headers": fake.headers(), "timeout": 5.0}
    options.update(kwargs)
    return httpx.AsyncClient(event_hooks={"response": [_check_exchange]}, **options)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeIntercom]:
    server = FakeIntercom(clock=clock, seed=7)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(fake: FakeIntercom) -> AsyncIterator[httpx.AsyncClient]:
    async with checked_client(fake) as http:
        yield http
