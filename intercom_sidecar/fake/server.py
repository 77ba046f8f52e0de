""":class:`FakeIntercom`: a real HTTP server on loopback that behaves like Intercom's REST API v2.16."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from intercom_sidecar.fake.app import FakeApp
from intercom_sidecar.fake.attributes import CREATABLE_DATA_TYPES, MODEL_WORDS
from intercom_sidecar.fake.faults import Faults, RateLimiter
from intercom_sidecar.fake.ledger import Ledger, LedgerEntry
from intercom_sidecar.fake.state import DataAttribute, State
from intercom_sidecar.fake.views import error_view
from intercom_sidecar.http_server import HttpServer, Request, Response

__all__ = ["API_VERSION", "FakeIntercom"]

#: The API version the fake follows; send it as ``Intercom-Version``.
API_VERSION = "2.16"


class FakeIntercom:
    """A fake Intercom workspace served over HTTP/1.1 on 127.0.0.1.

    ``state`` holds contacts, companies, events and data attributes; ``faults`` what to break;
    ``ledger`` every API request received (never the ``Authorization`` header). ``clock`` drives
    timestamps and the rate-limit window, so tests can pass a fake one; ``seed`` makes ids and fault
    decisions repeatable.
    """

    def __init__(
        self,
        *,
        token: str = "fake-token",
        limit_per_window: int = 1666,
        window_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        allow_non_loopback: bool = False,
        ledger_max_entries: int | None = 100_000,
    ) -> None:
        self.token = token
        self.clock = clock
        self.state = State(clock, seed)
        self.faults = Faults(clock, seed)
        self.rate_limiter = RateLimiter(limit_per_window, window_seconds, clock)
        self.ledger: Ledger = Ledger(ledger_max_entries)
        self._app = FakeApp(
            token=token,
            state=self.state,
            faults=self.faults,
            limiter=self.rate_limiter,
            ledger=self.ledger,
            clock=clock,
            seed=seed,
        )
        self._http = HttpServer(self._app.handle, allow_non_loopback=allow_non_loopback, error_body=_intercom_error)
        self.url = ""

    # lifecycle --------------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (``port`` 0 picks a free one) and return the base URL, e.g. ``http://127.0.0.1:8089``."""
        bound_host, bound_port = await self._http.start(host, port)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        """Close the listener and every connection; requests in flight are abandoned."""
        await self._http.stop()

    @property
    def port(self) -> int:
        return self._http.port

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # helpers for tests ------------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer one API request without the HTTP server (for in-memory transports in tests)."""
        return await self._app.handle(request)

    def headers(self, version: str = API_VERSION) -> dict[str, str]:
        """The headers a well-behaved client sends: bearer token, ``Intercom-Version`` and JSON."""
        return {
            "Authorization": f"Bearer {self.token}",
            "Intercom-Version": version,
            "Accept": "application/json",
        }

    def reset(self) -> None:
        """Forget contacts, companies, events, custom attributes, the ledger, faults and the rate window."""
        self._app.reset()

    def add_data_attribute(
        self,
        name: str,
        model: str = "contact",
        data_type: str = "string",
        *,
        options: list[str] | None = None,
    ) -> DataAttribute:
        """Create a custom data attribute directly (as if an admin had), so writes to it are accepted."""
        if model not in MODEL_WORDS:
            raise ValueError(f"model must be contact or company, not {model!r}")
        if data_type not in CREATABLE_DATA_TYPES:
            raise ValueError(f"unknown data_type {data_type!r}")
        if data_type == "options" and len(options or []) < 2:
            raise ValueError("a list (options) attribute needs at least two options")
        if self.state.custom_attribute(model, name) is not None:
            raise ValueError(f"custom attribute {name!r} already exists for {model}")
        return self.state.add_data_attribute(name, model, data_type, options=options)

    def requests(self, method: str | None = None, path_prefix: str = "") -> list[LedgerEntry]:
        """Ledger entries, optionally only those for ``method`` under ``path_prefix``."""
        return self.ledger.matching(method, path_prefix)


def _intercom_error(status: int, message: str) -> tuple[str, bytes]:
    """The answers the HTTP layer writes itself (malformed HTTP, a body too large) in Intercom's error envelope."""
    code = "server_error" if status >= 500 else "bad_request"
    return "application/json", json.dumps(error_view(None, code, message)).encode()
