"""The HTTP/1.1 layer, spoken to over raw sockets: keep-alive, pipelining, malformed input, binding rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.http_server import DEFAULT_MAX_BODY_BYTES as MAX_BODY_BYTES
from intercom_sidecar.http_server import is_loopback_host

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def conn(fake: FakeIntercom) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


def _request(fake: FakeIntercom, method: str, path: str, body: object = None, extra: str = "") -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {fake.token}\r\n"
        f"Intercom-Version: 2.16\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}\r\n"
    )
    return head.encode() + data


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def test_keep_alive_serves_many_requests_on_one_connection(fake: FakeIntercom, conn: Stream) -> None:
    reader, writer = conn
    for i in range(3):
        writer.write(_request(fake, "POST", "/contacts", {"external_id": f"u{i}"}))
        status, headers, body = await _response(reader)
        assert status == 200 and json.loads(body)["external_id"] == f"u{i}"
        assert headers.get("connection") != "close"
    assert len(fake.state.contacts) == 3


async def test_pipelined_requests_are_answered_in_order(fake: FakeIntercom, conn: Stream) -> None:
    reader, writer = conn
    writer.write(b"".join(_request(fake, "POST", "/contacts", {"external_id": f"u{i}"}) for i in range(3)))
    answers = [json.loads((await _response(reader))[2])["external_id"] for _ in range(3)]
    assert answers == ["u0", "u1", "u2"]


async def test_connection_close_is_honoured(fake: FakeIntercom, conn: Stream) -> None:
    reader, writer = conn
    writer.write(_request(fake, "GET", "/me", extra="Connection: close\r\n"))
    status, _, _ = await _response(reader)
    assert status == 200
    assert await reader.read() == b""


@pytest.mark.parametrize(
    "garbage",
    [b"NOT HTTP AT ALL\r\n\r\n", b"GET /me HTTP/1.1\r\nBad Header Line\r\n\r\n", b"GET /me HTTP/1.1\r\n\r\n"],
)
async def test_malformed_http_gets_400_and_a_close(fake: FakeIntercom, conn: Stream, garbage: bytes) -> None:
    reader, writer = conn
    writer.write(garbage)
    status, headers, body = await _response(reader)
    assert status == 400
    assert headers["connection"] == "close"
    assert json.loads(body)["type"] == "error.list"
    assert await reader.read() == b""
    assert len(fake.ledger) == 0


async def test_too_large_body_is_413(fake: FakeIntercom, conn: Stream) -> None:
    reader, writer = conn
    size = MAX_BODY_BYTES + 1
    head = f"POST /contacts HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    writer.write(head + b" " * size)
    status, _, _ = await _response(reader)
    assert status == 413


async def test_stop_closes_connections_with_requests_in_flight(fake: FakeIntercom, conn: Stream) -> None:
    reader, writer = conn
    fake.faults.latency = 30.0
    writer.write(_request(fake, "GET", "/me"))
    await writer.drain()
    await asyncio.wait_for(fake.stop(), timeout=5)
    try:
        leftover = await asyncio.wait_for(reader.read(), timeout=5)
    except ConnectionError:
        leftover = b""
    assert leftover == b""


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.com"])
async def test_refuses_to_listen_beyond_loopback(host: str) -> None:
    fake = FakeIntercom()
    with pytest.raises(ValueError, match="non-loopback"):
        await fake.start(host)
    await fake.stop()


def test_loopback_hosts() -> None:
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "192.168.1.1", "", "intercom.io"))


async def test_url_and_restart(fake: FakeIntercom) -> None:
    assert fake.url == f"http://127.0.0.1:{fake.port}"
    with pytest.raises(RuntimeError):
        await fake.start()
