"""A minimal HTTP/1.1 server on asyncio and h11: the fake Intercom, the admin address (metrics, the event view) and
the Segment-compatible intake all run on it.

One :class:`asyncio.Protocol` per connection feeds bytes to an ``h11.Connection``; each complete request is
handed to an async handler, and its :class:`Response` is written back. Connections are kept alive between
requests (pipelined requests wait their turn). Malformed HTTP gets a ``400``, a body over the server's limit a
``413``, and the connection is closed; the body of those answers comes from the server's ``error_body``.
A response can ask for added latency before it is written, or for the connection to be reset (aborted)
instead of answered: that is how the fake injects network faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

import h11

from intercom_sidecar.config_values import is_loopback_host

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "ErrorBody",
    "Handler",
    "HttpServer",
    "Request",
    "Response",
    "is_loopback_host",
    "json_error_body",
]

_log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT_SECONDS: Final = 60.0
DEFAULT_MAX_CONNECTIONS: Final = 512
_MAX_HEAD_BYTES: Final = 64 * 1024


@dataclass(slots=True)
class Request:
    """One parsed HTTP request. Header names are lower-case; repeated headers are joined with ``, ``."""

    method: str
    target: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Response:
    """What the handler answers. ``reset`` aborts the connection instead; ``delay`` waits before writing."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    reset: bool = False


Handler = Callable[[Request], Awaitable[Response]]
ErrorBody = Callable[[int, str], tuple[str, bytes]]
"""(status, message) -> (content type, body) of the answers the server writes itself (400, 413, 500)."""


def json_error_body(status: int, message: str) -> tuple[str, bytes]:
    return "application/json", json.dumps({"error": message}).encode()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error" if status >= 400 else ""


def _raw_error(status: int, message: str, error_body: ErrorBody) -> bytes:
    reason = _reason(status)
    content_type, body = error_body(status, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Connection(asyncio.Protocol):
    """One client connection: h11 state machine plus at most one request in flight."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._request: h11.Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._idle: asyncio.TimerHandle | None = None

    # asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if len(self._server._connections) >= self._server.max_connections:
            self._closed = True  # full: a flood of idle connections costs the others nothing
            transport.close()
            return
        self._server._connections.add(self)
        self._wait_for_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _wait_for_request(self) -> None:
        """A whole request must arrive within the idle timeout (slow or idle clients are closed, not kept)."""
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self._server.idle_timeout, self._idle_timeout)

    def _idle_timeout(self) -> None:
        if self._task is None:
            self.close()

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        if self._task is None:
            self._process()

    def eof_received(self) -> bool:
        self._h11.receive_data(b"")
        if self._task is None:
            self._process()
        # Keep the transport open while a request is in flight; it is closed once the answer is written.
        return self._task is not None

    # request handling -------------------------------------------------------------------------------------

    def close(self, *, abort: bool = False) -> None:
        if self._transport is not None and not self._closed:
            self._closed = True
            if abort:
                self._transport.abort()
            else:
                self._transport.close()

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(_raw_error(status, message, self._server._error_body))
        self.close()

    def _process(self) -> None:
        while not self._closed:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(exc.error_status_hint, f"Malformed HTTP request: {exc}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._body = []
                self._body_size = 0
            elif isinstance(event, h11.Data):
                self._body_size += len(event.data)
                if self._body_size > self._server.max_body_bytes:
                    self._fail(413, "Request body too large")
                    return
                self._body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                request = self._build_request()
                if self._idle is not None:
                    self._idle.cancel()  # however long the handler takes: the timeout is for the client
                self._task = asyncio.get_running_loop().create_task(self._respond(request))
                self._server._tasks.add(self._task)
                self._task.add_done_callback(self._server._tasks.discard)
                return
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _build_request(self) -> Request:
        req = self._request
        assert req is not None
        headers: dict[str, str] = {}
        for name, value in req.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        target = req.target.decode("latin-1")
        path, _, query = target.partition("?")
        return Request(
            method=req.method.decode("ascii"),
            target=target,
            path=path,
            query_string=query,
            headers=headers,
            body=b"".join(self._body),
        )

    async def _respond(self, request: Request) -> None:
        try:
            try:
                response = await self._server._handler(request)
            except Exception:
                _log.exception("The HTTP handler failed for %s %s.", request.method, request.path)
                content_type, body = self._server._error_body(500, "Internal server error")
                response = Response(500, body, [("content-type", content_type)])
            if response.delay > 0:
                await asyncio.sleep(response.delay)
            if self._closed:
                return
            if response.reset:
                self.close(abort=True)
                return
            self._write(response)
        except asyncio.CancelledError:
            self.close(abort=True)
            return
        except Exception:
            _log.exception("Could not write the response to %s %s.", request.method, request.path)
            self.close(abort=True)
            return
        finally:
            self._task = None
        if not self._closed:
            self._next_cycle()

    def _write(self, response: Response) -> None:
        assert self._transport is not None
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
        if not any(name == "content-length" for name, _ in response.headers):  # a HEAD answer sets its own
            headers.append((b"content-length", str(len(response.body)).encode("ascii")))
        if self._server.closing:
            headers.append((b"connection", b"close"))
        reason = _reason(response.status).encode("ascii")  # SDKs show it (`[400] Bad Request`)
        data = self._h11.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        parts = [data or b""]
        if response.body:
            parts.append(self._h11.send(h11.Data(data=response.body)) or b"")
        parts.append(self._h11.send(h11.EndOfMessage()) or b"")
        self._transport.write(b"".join(parts))

    def _next_cycle(self) -> None:
        if self._h11.our_state is h11.MUST_CLOSE or self._h11.their_state is h11.MUST_CLOSE:
            self.close()
            return
        try:
            self._h11.start_next_cycle()
        except h11.LocalProtocolError:
            self.close()
            return
        self._wait_for_request()
        self._process()


class HttpServer:
    """Serves ``handler`` over HTTP/1.1 on a loopback address (others need ``allow_non_loopback``)."""

    def __init__(
        self,
        handler: Handler,
        *,
        allow_non_loopback: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        error_body: ErrorBody = json_error_body,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self._handler = handler
        self._allow_non_loopback = allow_non_loopback
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        """Seconds a connection may wait for (or take to send) its next request before it is closed."""
        self.max_connections = max_connections
        """Connections open at once; more are closed as they arrive."""
        self._error_body = error_body
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.host = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (``0`` picks a free port); return the bound address."""
        if not self._allow_non_loopback and not is_loopback_host(host):
            raise ValueError(f"refusing to listen on non-loopback host {host!r} (pass allow_non_loopback)")
        if self._server is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        self.closing = False
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = str(sockname[0]), int(sockname[1])
        return self.host, self.port

    async def stop(self) -> None:
        """Stop listening, close every connection and cancel requests in flight."""
        server, self._server = self._server, None
        if server is None:
            return
        self.closing = True
        server.close()
        for conn in list(self._connections):
            conn.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.wait_closed()
        # Let transports run their connection_lost callbacks before the loop may be closed.
        await asyncio.sleep(0)
