"""`IntercomClient`: pooled httpx clients with Intercom's headers; transport failures mapped once.

Requests go through `H11Transport` (`transport.py`) unless a transport is injected (tests) or the environment
names an HTTP(S) proxy, in which case httpx's own transport (httpcore) carries them and honours the proxy.

Every request carries `Authorization: Bearer <token>`, `Intercom-Version` and `Accept: application/json`.
Responses of any status come back as `IntercomResponse`, with Intercom's error envelope
(`{"type": "error.list", "errors": [{"code", "message"}]}`) parsed; `raise_for` judges the status with
`delivery.classify`. Transport failures (timeouts, refused or reset connections) raise `RetryableError`.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry.trace import NoOpTracer, Span, SpanKind, Status, StatusCode, Tracer

from intercom_sidecar import __version__
from intercom_sidecar.config import IntercomConfig, Secret, is_loopback_host
from intercom_sidecar.delivery.classify import error_for_status
from intercom_sidecar.delivery.ratelimit import RateLimiter
from intercom_sidecar.errors import ConfigError, PermanentError, RetryableError
from intercom_sidecar.intercom.transport import H11Transport
from intercom_sidecar.telemetry import spans
from intercom_sidecar.telemetry.logs import redact
from intercom_sidecar.telemetry.metrics import Metrics
from intercom_sidecar.telemetry.recent import RecentEvents

__all__ = ["IntercomClient", "IntercomResponse", "id_of", "parse_error_envelope", "proxy_configured", "raise_for"]

_MAX_MESSAGE_CHARS = 500
_CONNECTIONS_PER_POOL = 4


@dataclass(frozen=True, slots=True)
class IntercomResponse:
    status: int
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes
    endpoint: str
    """`METHOD /route/{template}`, e.g. `PUT /contacts/{id}`."""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> tuple[str, str]:
        """Intercom's first error as (code, message); ("", "") for a success."""
        if self.ok:
            return "", ""
        return parse_error_envelope(self.body)

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")


def raise_for(response: IntercomResponse, now: float) -> None:
    """Raise the classified `DeliveryError` for a response that is not a success.

    Intercom's message is redacted first: it becomes an ack reason, a span status and a dead letter, and an error
    message may quote what was sent (a token, say).
    """
    code, message = response.error
    error = error_for_status(
        response.status,
        code=redact(code),
        message=redact(message),
        headers=response.headers,
        endpoint=response.endpoint,
        now=now,
    )
    if error is not None:
        raise error


def id_of(response: IntercomResponse) -> str:
    """The `id` of the object a successful response carries; PermanentError when it has none."""
    data = response.json() if response.body else None
    if isinstance(data, dict) and isinstance(data.get("id"), str | int) and not isinstance(data.get("id"), bool):
        return str(data["id"])
    raise PermanentError(
        f"answer without an object id (HTTP {response.status})", status=response.status, endpoint=response.endpoint
    )


def parse_error_envelope(body: bytes) -> tuple[str, str]:
    """(code, message) of Intercom's first error; for a body that is not an error list, ("", its text)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", body[:_MAX_MESSAGE_CHARS].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return str(first.get("code") or ""), str(first.get("message") or "")[:_MAX_MESSAGE_CHARS]
        if "message" in data:
            return str(data.get("code") or data.get("type") or ""), str(data["message"])[:_MAX_MESSAGE_CHARS]
    return "", ""


class IntercomClient:
    """A thin, typed wrapper over httpx for Intercom's API. Close it with `aclose()` (or `async with`).

    With a `transport` (tests), every pool sends through it. Refuses (ConfigError) a base URL that would send the
    token in clear to another host: https, or plain http to a loopback address only. Redirects are not followed.
    """

    def __init__(
        self,
        config: IntercomConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
        recent: RecentEvents | None = None,
    ) -> None:
        self._recent = recent
        self._limiter = limiter
        self._metrics = metrics or Metrics()
        self._tracer = tracer or NoOpTracer()
        _require_https(config.base_url)
        self._host = urlsplit(config.base_url).hostname or ""
        # httpcore's pool bookkeeping costs CPU per request in proportion to its size (PERF-NOTES: 0.4 ms per
        # call at 8 connections, 1.9 ms at 32), so with it the connections are split over several small pools
        # used in turn rather than held in one large one. H11Transport's cost does not grow so: one pool.
        # An injected transport (tests) or H11Transport serves every client alike: then splitting buys nothing.
        pools = 1
        if transport is None:
            if proxy_configured(config.base_url):
                pools = -(-config.max_connections // _CONNECTIONS_PER_POOL)
            else:
                transport = H11Transport(max_connections=config.max_connections)
        self._pools = [
            httpx.AsyncClient(
                base_url=config.base_url,
                headers={
                    "Authorization": f"Bearer {config.token.reveal()}",
                    "Intercom-Version": config.api_version,
                    "Accept": "application/json",
                    "User-Agent": f"intercom-sidecar/{__version__}",
                },
                timeout=httpx.Timeout(config.timeout_seconds),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                transport=transport,
            )
            for size in _split(config.max_connections, pools)
        ]
        self._next_pool = itertools.cycle(self._pools)

    async def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> IntercomResponse:
        """Send one request. `endpoint` names the route template for errors and telemetry.

        Waits for the rate limiter first; the call is an HTTP client span (a child of the current span).
        """
        content = None
        headers = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json"}
        if self._limiter is not None:
            await self._limiter.acquire()
        with self._tracer.start_as_current_span(
            endpoint,
            kind=SpanKind.CLIENT,
            attributes={
                spans.ATTR_HTTP_METHOD: method,
                spans.ATTR_URL_TEMPLATE: endpoint.partition(" ")[2],
                spans.ATTR_SERVER_ADDRESS: self._host,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            response = await self._send(method, path, endpoint, content, headers, params, span)
        return IntercomResponse(
            status=response.status_code, headers=response.headers, body=response.content, endpoint=endpoint
        )

    async def _send(
        self,
        method: str,
        path: str,
        endpoint: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        span: Span,
    ) -> httpx.Response:
        failure: RetryableError | None = None
        started = time.perf_counter()
        try:
            response = await next(self._next_pool).request(
                method, path, content=content, headers=headers, params=params
            )
        except httpx.TransportError as exc:
            failure = _transport_failure(exc, endpoint)
        elapsed = time.perf_counter() - started
        if failure is not None:
            self._metrics.intercom_call(endpoint, None, elapsed, error_type=failure.code)
            if self._recent is not None:
                self._recent.call(method, endpoint, None, elapsed, error=failure.code)
            if self._limiter is not None:
                self._limiter.release()
            span.set_attribute(spans.ATTR_ERROR_TYPE, failure.code)
            span.set_status(Status(StatusCode.ERROR, failure.message))
            # Raised outside the except block: the httpx exception (which holds the request and so the token)
            # is not kept as __context__.
            raise failure
        self._metrics.intercom_call(endpoint, response.status_code, elapsed)
        if self._recent is not None:
            self._recent.call(method, endpoint, response.status_code, elapsed, response.headers.get("x-request-id", ""))
        if self._limiter is not None:
            self._limiter.observe(response.headers, response.status_code)
        span.set_attribute(spans.ATTR_HTTP_STATUS, response.status_code)
        if request_id := response.headers.get("x-request-id"):
            span.set_attribute(spans.ATTR_INTERCOM_REQUEST_ID, request_id)
        if (remaining := response.headers.get("x-ratelimit-remaining")) is not None and remaining.isdigit():
            span.set_attribute(spans.ATTR_INTERCOM_RATELIMIT_REMAINING, int(remaining))
        if response.status_code >= 400:
            span.set_attribute(spans.ATTR_ERROR_TYPE, str(response.status_code))
            span.set_status(Status(StatusCode.ERROR))
        return response

    def set_token(self, token: Secret) -> None:
        """Use `token` from the next request on (a rotated token file)."""
        for pool in self._pools:
            pool.headers["Authorization"] = f"Bearer {token.reveal()}"

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    async def __aenter__(self) -> IntercomClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _require_https(base_url: str) -> None:
    """Defence in depth beside `config`'s own check of INTERCOM_API_URL: whoever builds the client, the token only
    travels over TLS, or over plain http to this machine (tests and the fake Intercom)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and is_loopback_host(host):
        return
    raise ConfigError(
        "INTERCOM_API_URL",
        f"the Intercom client refuses `{parts.scheme}://{host}`: use https (plain http only to a loopback address)",
    )


def proxy_configured(url: str) -> bool:
    """True when the environment names a proxy for `url`'s scheme (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, any
    case). httpx's default transport then handles it, `NO_PROXY` included."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(urlsplit(url).scheme) or proxies.get("all"))


def _split(total: int, parts: int) -> list[int]:
    """`total` as `parts` sizes differing by at most one: _split(10, 3) == [4, 3, 3]."""
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


def _transport_failure(exc: httpx.TransportError, endpoint: str) -> RetryableError:
    """httpx's exceptions -> RetryableError with a short code. Only the exception's type and text are kept."""
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"{type(exc).__name__}: no answer in time", code="timeout", endpoint=endpoint)
    if isinstance(exc, httpx.LocalProtocolError):
        # Its text quotes the offending request header, which may be the Authorization header.
        return RetryableError(
            f"{type(exc).__name__}: the request was not sent", code="protocol_error", endpoint=endpoint
        )
    return RetryableError(
        f"{type(exc).__name__}: {str(exc) or 'connection failed'}", code="connection_error", endpoint=endpoint
    )
