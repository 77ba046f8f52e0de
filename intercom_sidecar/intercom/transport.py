"""`H11Transport`: an httpx transport on asyncio and h11, with a small keep-alive pool per origin.

httpcore's pool (anyio locks, per-request bookkeeping over every connection) costs about 1 ms of CPU per call at
32 requests in flight (PERF-NOTES); this transport does the same job with one `asyncio.Protocol` per connection, an
`asyncio.Semaphore` (FIFO) bounding the connections of each origin, and a list of idle connections. It does only
what `IntercomClient` needs: HTTP/1.1 over TCP or TLS, request bodies read whole, response bodies read whole, no
proxies (the client falls back to httpx's own transport when one is configured), no HTTP/2, no upgrades.

Failures raise httpx's exceptions, where httpcore would raise the same ones:

    UnsupportedProtocol        a scheme other than http and https
    PoolTimeout                no connection free within the `pool` timeout
    ConnectError               refused, unresolvable, TLS handshake or certificate refused
    ConnectTimeout             TCP connect plus TLS handshake longer than the `connect` timeout
    LocalProtocolError         a request h11 refuses to write (a bad header, a body longer than its Content-Length)
    WriteTimeout               the request could not be handed to the kernel within the `write` timeout
    ReadTimeout                no byte from the server for the `read` timeout
    ReadError                  the connection was reset while waiting for the answer
    RemoteProtocolError        a malformed answer, or the connection closed before the answer was complete

A connection is reused only after a complete exchange that leaves both sides of h11 in DONE (so `connection:
close` from either side ends it), and is discarded after any error or cancellation. A request sent on a reused
connection that the server closed (or reset) before a single byte of the answer arrived -- the server closed it
while idle and the request crossed the close -- is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final

import h11
import httpx

__all__ = ["H11Transport", "Origin", "RawResponse", "Timeouts"]

_MAX_HEAD_BYTES: Final = 100 * 1024
Origin = tuple[bytes, str, int]
"""(scheme, host, port): b"https", "api.intercom.io", 443."""
Timeouts = dict[str, float | None]
"""httpx's names: "connect", "read", "write", "pool"; a missing one waits for ever."""


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A whole answer, as h11 read it: header names are lowercase."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the socket's bytes go straight into h11; a request waits on `_waiter`."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
        self.transport: asyncio.Transport | None = None
        self.received = 0
        """Bytes received since the current request began (or, while idle, since it ended)."""
        self.idle_since = 0.0
        self.eof = False
        self.closed = False
        self.reset: Exception | None = None
        self._paused = False
        self._waiter: asyncio.Future[bool] | None = None

    # asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.h11.receive_data(data)
        self._wake()

    def eof_received(self) -> None:
        self._end_of_data()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None:
            self._end_of_data()
        else:
            # Bytes already received are still read (h11 holds them); the reset is reported after them.
            self.reset = exc
            self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # used by the pool -------------------------------------------------------------------------------------

    def reusable(self, since: float) -> bool:
        """Idle since the end of its last exchange, after `since`, and nothing heard from the server meanwhile."""
        return not self.eof and not self.closed and self.received == 0 and self.idle_since >= since

    def close(self) -> None:
        """Drop the connection at once (nothing of ours is worth flushing after an error or when idle)."""
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    async def write(self, data: bytes, timeout: float | None) -> None:
        if self.closed or self.eof:
            # As httpcore does: a failed write is ignored and the answer is read, which reports why.
            return
        assert self.transport is not None
        self.transport.write(data)
        while self._paused and not self.closed:
            if await self._wait(timeout):
                raise httpx.WriteTimeout(f"could not send the request within {timeout} s")

    async def next_event(self, timeout: float | None) -> Any:
        """The next h11 event of the answer, waiting up to `timeout` for each arrival of bytes."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self.received == 0:
                    raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is not h11.NEED_DATA:
                return event
            if self.reset is not None:
                raise httpx.ReadError(str(self.reset) or type(self.reset).__name__) from self.reset
            if self.eof:
                # Closed without an end of file from the peer (an aborted TLS session, say): seen as one.
                raise httpx.RemoteProtocolError("Server disconnected without sending a complete response.")
            if await self._wait(timeout):
                raise httpx.ReadTimeout(f"no data from the server for {timeout} s")

    # internals --------------------------------------------------------------------------------------------

    def _end_of_data(self) -> None:
        if not self.eof:
            self.eof = True
            self.h11.receive_data(b"")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    async def _wait(self, timeout: float | None) -> bool:
        """Wait for bytes, end of file or room to write; True when `timeout` ran out first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        expiry = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            self._waiter = None
            if expiry is not None:
                expiry.cancel()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


class _Pool:
    """At most `max_connections` connections to one origin; requests wait their turn in FIFO order."""

    def __init__(self, origin: Origin, max_connections: int, ssl_context: ssl.SSLContext | None, expiry: float):
        self._scheme, self._host, self._port = origin
        self._ssl = ssl_context if self._scheme == b"https" else None
        self._expiry = expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self.closed = False

    async def send(self, request: h11.Request, body: bytes, timeouts: Timeouts) -> RawResponse:
        await self._acquire(timeouts.get("pool"))
        try:
            conn = self._take_idle()
            if conn is None:
                return await self._exchange(await self._connect(timeouts.get("connect")), request, body, timeouts)
            try:
                return await self._exchange(conn, request, body, timeouts)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                if conn.received:  # with nothing received, these mean the server closed or reset it
                    raise
            # The server closed this kept-alive connection as the request went out: nothing was answered.
            return await self._exchange(await self._connect(timeouts.get("connect")), request, body, timeouts)
        finally:
            self._slots.release()

    def close(self) -> None:
        self.closed = True
        while self._idle:
            self._idle.pop().close()

    async def _acquire(self, timeout: float | None) -> None:
        if timeout is None or not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no connection free within {timeout} s") from None

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection still fit for a request; the unfit ones are closed."""
        since = time.monotonic() - self._expiry
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable(since):
                return conn
            conn.close()
        return None

    async def _connect(self, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        server_hostname = self._host if self._ssl is not None else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._ssl, server_hostname=server_hostname
                )
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise httpx.ConnectTimeout(f"no connection to {self._host}:{self._port} within {timeout} s") from exc
        except OSError as exc:  # refused, unreachable, DNS (gaierror), TLS (SSLError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    async def _exchange(self, conn: _Connection, request: h11.Request, body: bytes, timeouts: Timeouts) -> RawResponse:
        """Send the request and read the whole answer; keep the connection if both sides allow it, else close it."""
        read_timeout = timeouts.get("read")
        conn.received = 0
        try:
            try:
                head = conn.h11.send(request)
                data = conn.h11.send(h11.Data(data=body)) if body else b""
                tail = conn.h11.send(h11.EndOfMessage())
            except h11.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc)) from exc
            await conn.write(b"".join((head or b"", data or b"", tail or b"")), timeouts.get("write"))
            answer = await conn.next_event(read_timeout)
            while isinstance(answer, h11.InformationalResponse):  # 100 Continue and the like
                answer = await conn.next_event(read_timeout)
            if not isinstance(answer, h11.Response):
                raise httpx.RemoteProtocolError(f"unexpected {type(answer).__name__} instead of a response")
            chunks = []
            while not isinstance(event := await conn.next_event(read_timeout), h11.EndOfMessage):
                if not isinstance(event, h11.Data):
                    raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} in a response body")
                chunks.append(bytes(event.data))
        except BaseException:
            conn.close()
            raise
        self._release(conn)
        return RawResponse(answer.status_code, answer.reason, list(answer.headers), b"".join(chunks))

    def _release(self, conn: _Connection) -> None:
        if self.closed or conn.closed or conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
            conn.close()
            return
        conn.h11.start_next_cycle()
        conn.received = 0
        conn.idle_since = time.monotonic()
        self._idle.append(conn)


class H11Transport(httpx.AsyncBaseTransport):
    """Sends requests over pooled HTTP/1.1 connections, at most `max_connections` per origin: httpx's (as its
    transport) or, cheaper, ready-made `h11.Request`s through `exchange` (httpx's request and response objects,
    URL parsing and header checks cost more CPU than the exchange itself).

    `ssl_context` defaults to httpx's (certifi's trust store, or `SSL_CERT_FILE` / `SSL_CERT_DIR`); idle
    connections older than `keepalive_expiry` seconds are closed rather than reused.
    """

    def __init__(
        self,
        *,
        max_connections: int = 10,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = 5.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._pools: dict[Origin, _Pool] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        origin = (scheme, url.raw_host.decode("ascii"), url.port or (443 if scheme == b"https" else 80))
        body = await request.aread()
        try:
            head = h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        answer = await self.exchange(origin, head, body, request.extensions.get("timeout", {}))
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
        )

    async def exchange(self, origin: Origin, request: h11.Request, body: bytes, timeouts: Timeouts) -> RawResponse:
        """Send `request` (its headers complete: Host, Content-Length, ...) with `body` to `origin`; the answer.
        Raises httpx's exceptions, as `handle_async_request` does."""
        scheme = origin[0]
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme.decode('ascii', 'replace')!r}")
        if self._closed:
            raise RuntimeError("the transport is closed")
        pool = self._pools.get(origin)
        if pool is None:
            if scheme == b"https" and self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            pool = self._pools[origin] = _Pool(origin, self._max_connections, self._ssl_context, self._keepalive_expiry)
        return await pool.send(request, body, timeouts)

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        await asyncio.sleep(0)  # let the aborted transports run connection_lost
