"""The shared HTTP/1.1 server's protections: idle and slow clients are closed, and connections are capped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from intercom_sidecar.http_server import HttpServer, Request, Response

pytestmark = pytest.mark.timeout(10)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def ok(request: Request) -> Response:
    return Response(200, b"ok")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    servers: list[HttpServer] = []

    async def start(handler: Callable[[Request], Awaitable[Response]] = ok, **options: float) -> int:
        server = HttpServer(handler, **options)  # type: ignore[arg-type]
        servers.append(server)
        return (await server.start("127.0.0.1", 0))[1]

    yield start
    for server in servers:
        await server.stop()


async def test_a_client_that_sends_nothing_is_closed_after_the_idle_timeout(
    serve: Callable[..., Awaitable[int]],
) -> None:
    port = await serve(idle_timeout=0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HT")  # half a request line, then nothing (a slow-headers client)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()


async def test_a_kept_alive_connection_is_closed_once_idle_but_a_slow_handler_is_still_answered(
    serve: Callable[..., Awaitable[int]],
) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.3)  # the handler's own work: longer than the idle timeout
        return Response(200, b"late")

    port = await serve(slow, idle_timeout=0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    answer = await asyncio.wait_for(reader.read(), 5)  # the answer, then the close once idle again
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"late")
    writer.close()


async def test_connections_beyond_the_cap_are_closed_as_they_arrive(serve: Callable[..., Awaitable[int]]) -> None:
    port = await serve(max_connections=2)
    kept = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    first_reader, first_writer = kept[0]
    first_writer.write(REQUEST)
    assert (await asyncio.wait_for(first_reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200 ")
    for _, kept_writer in kept:
        kept_writer.close()
