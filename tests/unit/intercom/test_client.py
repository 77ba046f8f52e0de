"""IntercomClient over httpx.MockTransport: headers, JSON bodies, error envelopes, transport errors, no token leaks."""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Callable

import httpx
import pytest

from intercom_sidecar import __version__
from intercom_sidecar.config import Config
from intercom_sidecar.delivery.clock import SystemClock
from intercom_sidecar.delivery.ratelimit import RateLimiter
from intercom_sidecar.errors import ConfigError, RetryableError
from intercom_sidecar.intercom.client import (
    IntercomClient,
    IntercomResponse,
    _DirectChannel,
    _split,
    parse_error_envelope,
)
from intercom_sidecar.intercom.transport import H11Transport
from tests.conftest import TEST_TOKEN

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers with `response` (or raises `error`)."""

    def __init__(self, response: httpx.Response | None = None, error: Exception | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response or httpx.Response(200, json={"type": "contact", "id": "c1"})
        self.error = error

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return self.response


def client_for(handler: Handler, config_factory: Callable[..., Config], **intercom: object) -> IntercomClient:
    return IntercomClient(config_factory(**intercom).intercom, transport=httpx.MockTransport(handler))


async def test_headers_and_json_body(config_factory: Callable[..., Config]) -> None:
    recorder = Recorder()
    async with client_for(recorder, config_factory, api_version="2.16") as client:
        await client.request("POST", "/contacts", endpoint="POST /contacts", body={"role": "user", "name": "Zoë"})

    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == "https://api.intercom.test/contacts"
    assert request.headers["Authorization"] == f"Bearer {TEST_TOKEN}"
    assert request.headers["Intercom-Version"] == "2.16"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"intercom-sidecar/{__version__}"
    assert request.content == '{"role":"user","name":"Zoë"}'.encode()
    assert json.loads(request.content) == {"role": "user", "name": "Zoë"}


async def test_api_version_comes_from_config(config_factory: Callable[..., Config]) -> None:
    recorder = Recorder()
    async with client_for(recorder, config_factory, api_version="2.11") as client:
        await client.request("GET", "/me", endpoint="GET /me")
    assert recorder.requests[0].headers["Intercom-Version"] == "2.11"


async def test_get_with_params_has_no_body(config_factory: Callable[..., Config]) -> None:
    recorder = Recorder()
    async with client_for(recorder, config_factory) as client:
        await client.request("GET", "/data_attributes", endpoint="GET /data_attributes", params={"model": "contact"})

    (request,) = recorder.requests
    assert str(request.url) == "https://api.intercom.test/data_attributes?model=contact"
    assert request.content == b""
    assert "Content-Type" not in request.headers
    assert request.headers["Authorization"] == f"Bearer {TEST_TOKEN}"


async def test_base_url_with_a_path_prefix(config_factory: Callable[..., Config]) -> None:
    recorder = Recorder()
    async with client_for(recorder, config_factory, base_url="http://127.0.0.1:8089/intercom") as client:
        await client.request("PUT", "/contacts/c1", endpoint="PUT /contacts/{id}", body={})
    assert str(recorder.requests[0].url) == "http://127.0.0.1:8089/intercom/contacts/c1"


async def test_success_response(config_factory: Callable[..., Config]) -> None:
    answer = httpx.Response(200, json={"type": "contact", "id": "c1"}, headers={"X-Request-Id": "req-1"})
    async with client_for(Recorder(answer), config_factory) as client:
        response = await client.request("POST", "/contacts", endpoint="POST /contacts", body={})

    assert (response.status, response.ok, response.endpoint) == (200, True, "POST /contacts")
    assert response.json() == {"type": "contact", "id": "c1"}
    assert response.error == ("", "")
    assert response.request_id == "req-1"
    assert response.headers["x-request-id"] == response.headers["X-REQUEST-ID"] == "req-1"


async def test_empty_body_is_none(config_factory: Callable[..., Config]) -> None:
    async with client_for(Recorder(httpx.Response(202)), config_factory) as client:
        response = await client.request("POST", "/events", endpoint="POST /events", body={"event_name": "x"})
    assert (response.status, response.ok, response.json(), response.request_id) == (202, True, None, "")


async def test_error_response_is_returned_not_raised(config_factory: Callable[..., Config]) -> None:
    envelope = {
        "type": "error.list",
        "request_id": "req-9",
        "errors": [{"code": "not_found", "message": "User Not Found"}],
    }
    async with client_for(Recorder(httpx.Response(404, json=envelope)), config_factory) as client:
        response = await client.request("POST", "/events", endpoint="POST /events", body={})
    assert (response.status, response.ok, response.error) == (404, False, ("not_found", "User Not Found"))


LONG = "m" * 600


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"type":"error.list","errors":[{"code":"unauthorized","message":"Access Token Invalid"}]}',
            ("unauthorized", "Access Token Invalid"),
        ),
        (
            b'{"type":"error.list","errors":[{"code":"a","message":"first"},{"code":"b","message":"second"}]}',
            ("a", "first"),
        ),
        (b'{"errors":[{"message":"no code"}]}', ("", "no code")),
        (b'{"errors":[{"code":"x","message":null}]}', ("x", "")),
        (b'{"type":"error","message":"Bad"}', ("error", "Bad")),
        (b'{"code":"c","type":"t","message":"m"}', ("c", "m")),
        (b'{"errors":[],"message":"fallback"}', ("", "fallback")),
        (b'{"errors":["not an object"]}', ("", "")),
        (b'{"type":"contact"}', ("", "")),
        (b"[1, 2]", ("", "")),
        (b"", ("", "")),
        (b"<html><body>502 Bad Gateway</body></html>", ("", "<html><body>502 Bad Gateway</body></html>")),
        (b"  upstream timeout \n", ("", "upstream timeout")),
        (b"\xff\xfe broken", ("", "\ufffd\ufffd broken")),
        (('{"errors":[{"code":"c","message":"' + LONG + '"}]}').encode(), ("c", "m" * 500)),
        (LONG.encode(), ("", "m" * 500)),
    ],
    ids=[
        "error.list",
        "first of several errors",
        "error without code",
        "null message",
        "single error object",
        "code wins over type",
        "empty errors, top-level message",
        "errors not objects",
        "JSON without errors",
        "JSON list",
        "empty body",
        "HTML",
        "plain text stripped",
        "invalid UTF-8",
        "long message cut to 500",
        "long text cut to 500",
    ],
)
def test_parse_error_envelope(body: bytes, expected: tuple[str, str]) -> None:
    assert parse_error_envelope(body) == expected


def test_response_error_on_non_json_body() -> None:
    response = IntercomResponse(status=503, headers={}, body=b"Service Unavailable", endpoint="POST /events")
    assert response.error == ("", "Service Unavailable")


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (
            httpx.ConnectError("[Errno 111] Connection refused"),
            "connection_error",
            "ConnectError: [Errno 111] Connection refused",
        ),
        (httpx.ConnectError(""), "connection_error", "ConnectError: connection failed"),
        (
            httpx.RemoteProtocolError("Server disconnected"),
            "connection_error",
            "RemoteProtocolError: Server disconnected",
        ),
        (httpx.ReadError("reset by peer"), "connection_error", "ReadError: reset by peer"),
        (httpx.ReadTimeout("timed out"), "timeout", "ReadTimeout: no answer in time"),
        (httpx.ConnectTimeout("timed out"), "timeout", "ConnectTimeout: no answer in time"),
        (httpx.PoolTimeout(""), "timeout", "PoolTimeout: no answer in time"),
    ],
    ids=[
        "connect refused",
        "connect, no message",
        "disconnected",
        "read error",
        "read timeout",
        "connect timeout",
        "pool",
    ],
)
async def test_transport_errors_are_retryable(
    config_factory: Callable[..., Config], error: Exception, code: str, message: str
) -> None:
    async with client_for(Recorder(error=error), config_factory) as client:
        with pytest.raises(RetryableError) as caught:
            await client.request("POST", "/contacts", endpoint="POST /contacts", body={"email": "a@b.c"})

    raised = caught.value
    assert type(raised) is RetryableError
    assert (raised.code, raised.message, raised.status, raised.endpoint) == (code, message, None, "POST /contacts")
    assert raised.retry_after is None
    assert raised.__cause__ is None
    assert raised.__context__ is None, "the httpx error (it holds the request, and so the token) is not kept"


def _everything_said_about(error: BaseException) -> str:
    return "\n".join(
        [
            str(error),
            repr(error),
            *map(str, error.args),
            *traceback.format_exception(error),
            getattr(error, "reason", ""),
        ]
    )


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("bad")],
    ids=["connect", "timeout", "protocol"],
)
async def test_token_never_appears_in_an_error(config_factory: Callable[..., Config], error: Exception) -> None:
    client = client_for(Recorder(error=error), config_factory)
    with pytest.raises(RetryableError) as caught:
        await client.request("POST", "/contacts", endpoint="POST /contacts", body={})
    await client.aclose()

    assert TEST_TOKEN not in _everything_said_about(caught.value)
    assert TEST_TOKEN not in repr(client)


async def test_token_never_appears_in_a_response_or_the_config(config_factory: Callable[..., Config]) -> None:
    config = config_factory()
    answer = httpx.Response(401, json={"type": "error.list", "errors": [{"code": "unauthorized", "message": "no"}]})
    async with IntercomClient(config.intercom, transport=httpx.MockTransport(Recorder(answer))) as client:
        response = await client.request("GET", "/me", endpoint="GET /me")

    assert TEST_TOKEN not in repr(response)
    assert TEST_TOKEN not in repr(config)
    assert TEST_TOKEN not in str(config)


@pytest.mark.parametrize(
    ("total", "parts", "sizes"), [(16, 4, [4, 4, 4, 4]), (10, 3, [4, 3, 3]), (1, 1, [1]), (5, 2, [3, 2])]
)
def test_connections_are_split_evenly_over_pools(total: int, parts: int, sizes: list[int]) -> None:
    assert _split(total, parts) == sizes
    assert sum(_split(total, parts)) == total


async def test_a_protocol_error_does_not_quote_the_request(config_factory: Callable[..., Config]) -> None:
    """h11 quotes the offending header value, which may be the Authorization header."""
    error = httpx.LocalProtocolError(f"Illegal header value b'Bearer {TEST_TOKEN}'")
    async with client_for(Recorder(error=error), config_factory) as client:
        with pytest.raises(RetryableError) as caught:
            await client.request("POST", "/events", endpoint="POST /events", body={})
    assert caught.value.reason == "intercom protocol_error: LocalProtocolError: the request was not sent (POST /events)"
    assert TEST_TOKEN not in _everything_said_about(caught.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.intercom.io",
        "http://10.0.0.8:8080",
        "http://127.example.com",  # a public name that merely starts like a loopback address
        "ftp://127.0.0.1",
        "https://",
    ],
)
def test_the_client_refuses_to_send_the_token_in_clear_to_another_host(
    config_factory: Callable[..., Config], base_url: str
) -> None:
    """Whoever builds the client (not only `load_config`): a Config built in code reaches here unchecked."""
    config = config_factory(base_url=base_url).intercom
    with pytest.raises(ConfigError, match=r"INTERCOM_API_URL: the Intercom client refuses .* use https") as raised:
        IntercomClient(config, transport=httpx.MockTransport(Recorder()))
    assert TEST_TOKEN not in str(raised.value)


@pytest.mark.parametrize(
    "base_url", ["https://api.eu.intercom.io", "http://127.0.0.1:8089", "http://[::1]:8089", "http://localhost:1"]
)
def test_the_client_takes_https_and_loopback_http(config_factory: Callable[..., Config], base_url: str) -> None:
    IntercomClient(config_factory(base_url=base_url).intercom, transport=httpx.MockTransport(Recorder()))


async def test_a_request_cancelled_in_flight_releases_the_rate_limit_probe(
    config_factory: Callable[..., Config],
) -> None:
    """The first request into a window nothing is known about goes alone; if it is cancelled (the sidecar stopping)
    before its answer, the others must not wait for an answer that will never come."""
    limiter = RateLimiter(SystemClock())
    window_over = str(time.time() - 1)
    limiter.observe({"x-ratelimit-remaining": "5", "x-ratelimit-reset": window_over}, 200)
    sent = asyncio.Event()

    async def never_answer(request: httpx.Request) -> httpx.Response:
        sent.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    config = config_factory().intercom
    async with IntercomClient(config, transport=httpx.MockTransport(never_answer), limiter=limiter) as client:
        probe = asyncio.ensure_future(client.request("GET", "/me", endpoint="GET /me"))
        await sent.wait()
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        await asyncio.wait_for(limiter.acquire(), 1)  # the next request may probe the window now


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("https://api.intercom.io", b"api.intercom.io"),
        ("https://api.intercom.io:443", b"api.intercom.io"),  # the scheme's own port is left out, as httpx does
        ("https://api.intercom.io:8443", b"api.intercom.io:8443"),
        ("http://127.0.0.1:8089", b"127.0.0.1:8089"),
        ("http://[::1]:8089", b"[::1]:8089"),
    ],
)
def test_the_host_header_of_the_direct_path(config_factory: Callable[..., Config], base_url: str, host: bytes) -> None:
    config = config_factory(base_url=base_url).intercom
    channel = _DirectChannel(config, H11Transport())
    assert channel._headers[0] == (b"Host", host)
