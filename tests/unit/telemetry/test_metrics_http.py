"""The scrape endpoint over a real loopback socket: `GET /metrics`, 404 elsewhere, keep-alive, a clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from intercom_sidecar.server.admin_http import AdminServer
from intercom_sidecar.telemetry.metrics import Metrics, make_meter_provider
from intercom_sidecar.telemetry.prometheus import MetricsSource, PrometheusReader, metrics_handler

pytestmark = pytest.mark.timeout(10)


async def serve_metrics(source: MetricsSource) -> tuple[AdminServer, int]:
    server = AdminServer()
    server.route("/metrics", metrics_handler(source))
    return server, await server.start("127.0.0.1", 0)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Metrics, int]]:
    reader = PrometheusReader()
    metrics = Metrics(make_meter_provider({}, readers=(reader,)))
    server, port = await serve_metrics(reader)
    try:
        yield metrics, port
    finally:
        await server.stop()


async def test_get_metrics(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    metrics.event_received("identify", "accepted")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await client.get("/metrics")
        again = await client.get("/metrics?name[]=x")  # a query string is ignored

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.text.startswith("# HELP ")
    assert (
        'intercom_sidecar_events_received_total{intercom_sidecar_ack_status="accepted",segment_type="identify"} 1\n'
        in response.text
    )
    assert again.status_code == 200


async def test_other_paths_and_methods(served: tuple[Metrics, int]) -> None:
    _, port = served
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        missing = await client.get("/")
        other = await client.get("/metrics/extra")
        post = await client.post("/metrics", content=b"x")
        head = await client.head("/metrics")

    assert (missing.status_code, other.status_code) == (404, 404)
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0


async def exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()  # until the server closes
    finally:
        writer.close()
        await writer.wait_closed()


async def test_keep_alive_answers_several_requests_on_one_connection(served: tuple[Metrics, int]) -> None:
    _, port = served
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = await exchange(port, request + request + last)
    assert answer.count(b"HTTP/1.1 200 ") == 2
    assert answer.count(b"HTTP/1.1 404 ") == 1


async def test_malformed_requests_get_400(served: tuple[Metrics, int]) -> None:
    _, port = served
    answer = await exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_stop_closes_idle_connections_and_the_port() -> None:
    server, port = await serve_metrics(PrometheusReader())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"content-type: text/plain; version=0.0.4; charset=utf-8" in head.lower()

    await server.stop()
    assert await reader.read() == b""  # the kept-alive connection was closed
    writer.close()
    await writer.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    await server.stop()  # idempotent
