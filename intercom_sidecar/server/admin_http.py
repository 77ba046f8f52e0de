"""The admin addresses (`INTERCOM_SIDECAR_METRICS_LISTEN`, `INTERCOM_SIDECAR_ADMIN_LISTEN`): a few HTTP routes on the
event loop.

Each route is a path, the methods it answers and an async handler; `HEAD` is answered from `GET` without the
body. Unknown paths get 404 (listing the known ones), other methods 405 with `Allow`. Routes are added by the app,
one at a time: `/metrics` on the metrics address; the event view (`admin/view.py`, which guards its own routes) and
`/metrics` on the loopback admin address.
"""

from __future__ import annotations

from dataclasses import dataclass

from intercom_sidecar.http_server import Handler, HttpServer, Request, Response

__all__ = ["AdminServer", "plain_text"]

_TEXT = "text/plain; charset=utf-8"


def plain_text(status: int, message: str) -> Response:
    return Response(status, f"{message}\n".encode(), [("content-type", _TEXT)])


def _error_body(status: int, message: str) -> tuple[str, bytes]:
    return _TEXT, f"{message}\n".encode()


@dataclass(frozen=True, slots=True)
class _Route:
    methods: tuple[str, ...]
    handler: Handler


class AdminServer:
    """`route()` what to serve, then `await start(host, port)`; `await stop()` closes every connection."""

    def __init__(self, *, allow_non_loopback: bool = True) -> None:
        self._routes: dict[str, _Route] = {}
        # The metrics address is meant for the pod IP (scrapes, probes): any host may be bound. The event view's
        # address is loopback-only unless INTERCOM_SIDECAR_INSECURE_LISTEN says otherwise.
        self._http = HttpServer(
            self._handle, allow_non_loopback=allow_non_loopback, max_body_bytes=64 * 1024, error_body=_error_body
        )

    def route(self, path: str, handler: Handler, *, methods: tuple[str, ...] = ("GET",)) -> None:
        if "GET" in methods and "HEAD" not in methods:
            methods = (*methods, "HEAD")
        self._routes[path] = _Route(methods, handler)

    async def start(self, host: str, port: int) -> int:
        """Listen on `host:port` (port 0 picks a free one); the bound port."""
        _, bound = await self._http.start(host, port)
        return bound

    async def stop(self) -> None:
        """Stop listening and close every connection. Idempotent."""
        await self._http.stop()

    async def _handle(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            return plain_text(404, f"Not found: {request.path} (served here: {known}).")
        if request.method not in route.methods:
            response = plain_text(405, "Method not allowed.")
            response.headers.append(("allow", ", ".join(route.methods)))
            return response
        if request.method != "HEAD":
            return await route.handler(request)
        full = await route.handler(
            Request("GET", request.target, request.path, request.query_string, request.headers, b"")
        )
        return Response(full.status, b"", [*full.headers, ("content-length", str(len(full.body)))])
