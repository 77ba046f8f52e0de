"""The OpenAPI checking helpers in tests/openapi_schemas.py, which other test suites reuse."""

from __future__ import annotations

import uuid

import httpx
import pytest

from intercom_sidecar.fake import FakeIntercom
from tests.fake.conftest import INVALID_REQUEST
from tests.openapi_schemas import (
    ERRATA,
    find_operation,
    validate_ledger_requests,
    validate_request,
    validate_response,
)


def _error_body(request_id: object) -> dict[str, object]:
    return {"type": "error.list", "request_id": request_id, "errors": [{"code": "not_found", "message": "x"}]}


def test_paths_resolve_to_templates_preferring_literal_segments() -> None:
    assert find_operation("POST", "/contacts/search")[0] == "/contacts/search"
    assert find_operation("GET", "/contacts/abc")[0] == "/contacts/{contact_id}"
    assert find_operation("DELETE", "/contacts/a/companies/b?x=1")[0] == "/contacts/{contact_id}/companies/{company_id}"
    with pytest.raises(AssertionError, match="not an operation"):
        find_operation("PATCH", "/contacts/abc")


def test_requests_are_checked() -> None:
    validate_request("POST", "/contacts", b'{"email": "a@example.com"}')
    validate_request("GET", "/me", None)
    with pytest.raises(AssertionError, match=r"\$\.email"):
        validate_request("POST", "/contacts", {"email": 5})
    with pytest.raises(AssertionError, match="not JSON"):
        validate_request("POST", "/contacts", "{oops")
    with pytest.raises(AssertionError, match="takes no JSON body"):
        validate_request("GET", "/me", {"x": 1})


def test_responses_are_checked() -> None:
    validate_response("POST", "/events", 202, b"")
    validate_response("GET", "/contacts/x", 404, _error_body(str(uuid.uuid4())))
    with pytest.raises(AssertionError, match="without a body"):
        validate_response("POST", "/events", 202, {"ok": True})
    with pytest.raises(AssertionError, match="uuid"):
        validate_response("GET", "/contacts/x", 404, _error_body("not-a-uuid"))
    with pytest.raises(AssertionError, match="documents no 201"):
        validate_response("GET", "/me", 201, {})
    with pytest.raises(AssertionError, match="got none"):
        validate_response("GET", "/me", 200, b"")


def test_errata_follow_the_description_prose() -> None:
    assert len(ERRATA) == 3
    metadata = {
        "count": 3,
        "price": {"amount": 34999, "currency": "eur"},
        "article": {"url": "https://x", "value": "y"},
    }
    validate_request("POST", "/events", {"event_name": "e", "created_at": 1, "user_id": "u", "metadata": metadata})
    validate_request("POST", "/companies", {"company_id": "c1", "custom_attributes": {"paid": True, "seats": 9}})
    with pytest.raises(AssertionError):
        validate_request(
            "POST", "/events", {"event_name": "e", "created_at": 1, "user_id": "u", "metadata": {"a": [1]}}
        )


async def test_checked_client_catches_invalid_requests(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    with pytest.raises(AssertionError, match="external_id"):
        await client.post("/contacts", json={"external_id": 1})
    response = await client.post("/contacts", json={"external_id": 1}, extensions=INVALID_REQUEST)
    assert response.status_code == 400


async def test_ledger_requests_validate(fake: FakeIntercom, client: httpx.AsyncClient) -> None:
    await client.post("/contacts", json={"external_id": "u1"})
    await client.post("/events", json={"event_name": "e", "created_at": 1, "user_id": "u1"})
    await client.post("/contacts", content=b"{bad", extensions=INVALID_REQUEST)
    assert validate_ledger_requests(fake.ledger, skip=lambda e: e.status == 400) == 2
    with pytest.raises(AssertionError):
        validate_ledger_requests(fake.ledger)
    as_json = [e.to_json() for e in fake.ledger][:2]
    assert validate_ledger_requests(as_json) == 2
