"""Authentication, the Intercom-Version header, request ids and the fixed-window rate limit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from intercom_sidecar.fake import FakeIntercom
from tests.fake.conftest import FakeClock, checked_client

_RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic fake-token", "fake-token"])
async def test_bad_or_missing_token_is_401(fake: FakeIntercom, authorization: str | None) -> None:
    headers = {"Intercom-Version": "2.16"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with checked_client(fake, headers=headers) as client:
        response = await client.get("/me")
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error.list"
    assert body["errors"] == [{"code": "unauthorized", "message": "Access Token Invalid"}]
    assert body["request_id"] == response.headers["x-request-id"]
    # Intercom sends rate-limit headers only with valid credentials.
    assert not any(name in response.headers for name in _RATE_HEADERS)
    assert fake.ledger[-1].status == 401


async def test_version_header_is_required_and_checked(fake: FakeIntercom) -> None:
    async with checked_client(fake, headers={"Authorization": f"Bearer {fake.token}"}) as client:
        missing = await client.get("/me")
        unknown = await client.get("/me", headers={"Intercom-Version": "9.9"})
        fine = await client.get("/me", headers={"Intercom-Version": "2.11"})
    assert missing.status_code == unknown.status_code == 400
    assert missing.json()["errors"][0]["code"] == "intercom_version_invalid"
    assert unknown.json()["errors"][0]["code"] == "intercom_version_invalid"
    assert fine.status_code == 200


async def test_me_and_response_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 200
    assert response.json()["type"] == "admin" and response.json()["app"]["type"] == "app"
    assert response.headers["content-type"].startswith("application/json")
    uuid.UUID(response.headers["x-request-id"])
    assert response.headers["x-ratelimit-limit"] == "1666"
    assert response.headers["x-ratelimit-remaining"] == "1665"
    assert response.headers["x-ratelimit-reset"] == "1700000010"  # end of the 10 s window, Unix seconds
    other = await client.get("/me")
    assert other.headers["x-request-id"] != response.headers["x-request-id"]


async def test_unknown_route_is_404(fake: FakeIntercom) -> None:
    async with httpx.AsyncClient(base_url=fake.url, headers=fake.headers()) as client:
        response = await client.get("/no/such/endpoint")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


@pytest.fixture
async def limited(clock: FakeClock) -> AsyncIterator[FakeIntercom]:
    async with FakeIntercom(limit_per_window=3, window_seconds=10, clock=clock) as server:
        yield server


async def test_rate_limit_window(limited: FakeIntercom, clock: FakeClock) -> None:
    clock.advance(2.5)  # inside the window [1_700_000_000, 1_700_000_010)
    async with checked_client(limited) as client:
        allowed = [await client.get("/me") for _ in range(3)]
        assert [r.status_code for r in allowed] == [200, 200, 200]
        assert [r.headers["x-ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]

        throttled = await client.get("/me")
        assert throttled.status_code == 429
        assert throttled.json()["errors"] == [
            {"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 3 in 10_seconds"}
        ]
        assert throttled.headers["x-ratelimit-limit"] == "3"
        assert throttled.headers["x-ratelimit-remaining"] == "0"
        assert throttled.headers["x-ratelimit-reset"] == "1700000010"

        clock.advance(7.5)  # the next window starts
        again = await client.get("/me")
        assert again.status_code == 200
        assert again.headers["x-ratelimit-remaining"] == "2"
        assert again.headers["x-ratelimit-reset"] == "1700000020"
    assert [e.status for e in limited.ledger] == [200, 200, 200, 429, 200]


async def test_unauthenticated_requests_do_not_use_the_budget(limited: FakeIntercom) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as anonymous:
        for _ in range(5):
            assert (await anonymous.get("/me")).status_code == 401
    async with checked_client(limited) as client:
        assert (await client.get("/me")).headers["x-ratelimit-remaining"] == "2"
