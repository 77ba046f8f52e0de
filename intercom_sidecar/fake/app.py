"""The request pipeline of the fake Intercom: ledger, faults, auth, rate limit, version check, routes.

Requests under ``/_fake/`` are the test and inspection endpoints: no auth, no rate limit, no ledger.
"""

from __future__ import annotations

import json
import logging
import math
import random
import uuid
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from intercom_sidecar.fake.api import ApiError, Call
from intercom_sidecar.fake.control import Control
from intercom_sidecar.fake.faults import Faults, RateLimiter, Window, default_error
from intercom_sidecar.fake.ledger import Ledger, LedgerEntry
from intercom_sidecar.fake.routes import Routes
from intercom_sidecar.fake.state import State
from intercom_sidecar.fake.views import error_view
from intercom_sidecar.http_server import Request, Response

__all__ = ["VERSIONS", "FakeApp"]

#: ``Intercom-Version`` values the fake accepts (those of the API description, and ``Unstable``).
VERSIONS: Final = frozenset([f"1.{minor}" for minor in range(5)] + [f"2.{minor}" for minor in range(17)] + ["Unstable"])
_log = logging.getLogger(__name__)
_JSON: Final = ("content-type", "application/json; charset=utf-8")


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _window_seconds(window: float) -> str:
    return str(int(window)) if float(window).is_integer() else str(window)


class FakeApp:
    """Turns one HTTP request into one response (or a connection reset)."""

    def __init__(
        self,
        *,
        token: str,
        state: State,
        faults: Faults,
        limiter: RateLimiter,
        ledger: Ledger,
        clock: Callable[[], float],
        seed: int,
    ) -> None:
        self.token = token
        self.state = state
        self.faults = faults
        self.limiter = limiter
        self.ledger = ledger
        self.clock = clock
        self.routes = Routes(state, int(clock()))
        self.control = Control(self)
        self._ids = random.Random(seed ^ 0x5EED)

    def reset(self) -> None:
        """Forget contacts, companies, events, custom attributes, the ledger, faults and the rate window."""
        self.state.reset()
        self.ledger.reset()
        self.faults.clear()
        self.limiter.reset()

    async def handle(self, request: Request) -> Response:
        if request.path.startswith("/_fake/") or request.path == "/_fake":
            return self.control.handle(request)
        request_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        query = dict(parse_qsl(request.query_string, keep_blank_values=True))
        body: Any = None
        body_ok = True
        if request.body:
            try:
                body = json.loads(request.body)
            except (ValueError, UnicodeDecodeError):
                body, body_ok = request.body.decode("utf-8", "replace"), False
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        entry = LedgerEntry(
            seq=self.ledger.total + 1,
            at=self.clock(),
            method=request.method,
            path=request.path,
            query=query,
            headers=headers,
            body=body,
            status=0,
            request_id=request_id,
        )
        self.ledger.record(entry)
        delay = self.faults.latency
        if self.faults.roll_reset():
            entry.fault = "reset"
            return Response(0, delay=delay, reset=True)
        response = self._api(request, entry, query, body if body_ok else _INVALID)
        response.delay = delay
        return response

    def _error(self, entry: LedgerEntry, status: int, code: str, message: str | None) -> tuple[int, Any]:
        entry.status = status
        return status, error_view(entry.request_id, code, message)

    def _api(self, request: Request, entry: LedgerEntry, query: dict[str, str], body: Any) -> Response:
        headers = [_JSON, ("x-request-id", entry.request_id)]
        status, payload = self._pipeline(request, entry, query, body, headers)
        entry.status = status
        if status == 0:
            return Response(0, reset=True)
        return Response(status, b"" if payload is None else _encode(payload), headers)

    def _pipeline(
        self,
        request: Request,
        entry: LedgerEntry,
        query: dict[str, str],
        body: Any,
        headers: list[tuple[str, str]],
    ) -> tuple[int, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            return self._error(entry, 401, "unauthorized", "Access Token Invalid")
        if self.faults.throttled():
            entry.fault = "throttle_storm"
            peek = self.limiter.peek()
            until = math.ceil(self.faults.throttle_until or 0)
            self._rate_headers(headers, Window(False, peek.limit, 0, max(until, peek.reset)))
            return self._error(entry, 429, "rate_limit_exceeded", self._rate_message())
        window = self.limiter.hit()
        self._rate_headers(headers, window)
        if not window.allowed:
            return self._error(entry, 429, "rate_limit_exceeded", self._rate_message())
        version = request.headers.get("intercom-version")
        if version is None:
            return self._error(entry, 400, "intercom_version_invalid", "Intercom-Version header is required")
        if version not in VERSIONS:
            return self._error(entry, 400, "intercom_version_invalid", "The requested version could not be found")
        scripted = self.faults.take_scripted(request.method, request.path, after_processing=False)
        if scripted is not None:
            entry.fault = "scripted"
            if scripted.status == 0:
                return 0, None
            return self._error(entry, scripted.status, scripted.code, scripted.message)
        if self.faults.roll_error():
            entry.fault = "error_rate"
            code, message = default_error(self.faults.error_status)
            return self._error(entry, self.faults.error_status, code, message)
        found = self.routes.find(request.method, request.path)
        if found is None:
            return self._error(entry, 404, "not_found", "Resource Not Found")
        if body is _INVALID:
            return self._error(entry, 400, "parameter_invalid", "Request body is not valid JSON")
        handler, params = found
        try:
            status, payload = handler(Call(request.method, params, query, body))
        except ApiError as exc:
            headers.extend(exc.headers)
            status, payload = self._error(entry, exc.status, exc.code, exc.message)
        except Exception:
            _log.exception("fake intercom failed on %s %s", request.method, request.path)
            status, payload = self._error(entry, 500, "server_error", "Server Error")
        after = self.faults.take_scripted(request.method, request.path, after_processing=True)
        if after is not None:
            entry.fault = "scripted_after_processing"
            if after.status == 0:
                return 0, None
            return self._error(entry, after.status, after.code, after.message)
        return status, payload

    def _rate_message(self) -> str:
        return f"Exceeded rate limit of {self.limiter.limit} in {_window_seconds(self.limiter.window)}_seconds"

    @staticmethod
    def _rate_headers(headers: list[tuple[str, str]], window: Window) -> None:
        headers.append(("x-ratelimit-limit", str(window.limit)))
        headers.append(("x-ratelimit-remaining", str(max(0, window.remaining))))
        headers.append(("x-ratelimit-reset", str(window.reset)))


class _Invalid:
    """Marks a request body that is not JSON."""


_INVALID: Final = _Invalid()
