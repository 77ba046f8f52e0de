"""The ``/_fake/*`` test and inspection endpoints (no auth, no rate limit, not in the ledger).

- ``GET /_fake/health``: ``{"status": "ok"}``
- ``GET /_fake/state``: contacts, companies, events and data attributes
- ``GET /_fake/ledger[?since=SEQ]``: ``{"total": N, "entries": [...]}``, entries with ``seq > SEQ``
- ``POST /_fake/reset``: forget everything (state, ledger, faults, rate window)
- ``GET /_fake/faults``: current faults and rate limit
- ``POST /_fake/faults``: change them; the body is what :meth:`Faults.configure` takes, plus
  ``limit_per_window`` and ``window_seconds``
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from intercom_sidecar.http_server import Request, Response

if TYPE_CHECKING:
    from intercom_sidecar.fake.app import FakeApp

__all__ = ["Control"]

_HEADERS = [("content-type", "application/json; charset=utf-8")]


def _json(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), list(_HEADERS))


class Control:
    """Serves ``/_fake/*`` for one :class:`FakeApp`."""

    def __init__(self, app: FakeApp) -> None:
        self._app = app

    def handle(self, request: Request) -> Response:
        app = self._app
        match (request.method, request.path.rstrip("/")):
            case ("GET", "/_fake/health"):
                return _json(200, {"status": "ok"})
            case ("GET", "/_fake/state"):
                return _json(200, app.state.snapshot())
            case ("GET", "/_fake/ledger"):
                return self._ledger(request)
            case ("POST", "/_fake/reset"):
                app.reset()
                return _json(200, {"status": "ok"})
            case ("GET", "/_fake/faults"):
                return _json(200, self._faults())
            case ("POST", "/_fake/faults"):
                return self._configure(request)
        return _json(404, {"error": f"no such endpoint: {request.method} {request.path}"})

    def _ledger(self, request: Request) -> Response:
        since = 0
        for part in request.query_string.split("&"):
            key, _, value = part.partition("=")
            if key == "since" and value.isdigit():
                since = int(value)
        entries = [e.to_json() for e in self._app.ledger if e.seq > since]
        return _json(200, {"total": self._app.ledger.total, "entries": entries})

    def _faults(self) -> dict[str, Any]:
        limiter = self._app.limiter
        return {
            **self._app.faults.to_json(),
            "limit_per_window": limiter.limit,
            "window_seconds": limiter.window,
        }

    def _configure(self, request: Request) -> Response:
        try:
            settings = json.loads(request.body or b"{}")
            if not isinstance(settings, dict):
                raise ValueError("the body must be a JSON object")
            limit = settings.pop("limit_per_window", None)
            window = settings.pop("window_seconds", None)
            if limit is not None and int(limit) < 1:
                raise ValueError("limit_per_window must be positive")
            if window is not None and float(window) <= 0:
                raise ValueError("window_seconds must be positive")
            self._app.faults.configure(settings)
        except (ValueError, TypeError, KeyError) as exc:
            return _json(400, {"error": str(exc)})
        if limit is not None:
            self._app.limiter.limit = int(limit)
        if window is not None:
            self._app.limiter.window = float(window)
            self._app.limiter.reset()
        return _json(200, self._faults())
