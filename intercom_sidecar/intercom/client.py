"""`IntercomClient`: pooled HTTP/1.1 connections with Intercom's headers; transport failures mapped once.

Requests go straight to `H11Transport` (`transport.py`) as ready-made h11 requests: httpx's client layer (URL
merging and parsing, header objects, cookies, response decoding) cost more CPU per call than the exchange itself.
When a transport is injected (tests) or the environment names an HTTP(S) proxy, httpx clients carry them instead
(httpx's own transport, httpcore, honours the proxy). Both ways fail with httpx's exceptions.

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import h11
import httpx
from opentelemetry.trace import NoOpTracer, Span, SpanKind, Status, StatusCode, Tracer

from intercom_sidecar import __version__
from intercom_sidecar.config import IntercomConfig, Secret, is_loopback_host
from intercom_sidecar.delivery.classify import error_for_status
from intercom_sidecar.delivery.ratelimit import RateLimiter
from intercom_sidecar.errors import ConfigError, PermanentError, RetryableError
from intercom_sidecar.intercom.transport import H11Transport, Origin, Timeouts
from intercom_sidecar.telemetry import spans
from intercom_sidecar.telemetry.logs import redact
from intercom_sidecar.telemetry.metrics import Metrics
from intercom_sidecar.telemetry.recent import RecentEvents

__all__ = ["IntercomClient", "IntercomResponse", "id_of", "parse_error_envelope", "proxy_configured", "raise_for"]

_MAX_MESSAGE_CHARS = 500
_CONNECTIONS_PER_POOL = 4
_PATH_SAFE = "/:@!$&'()*+,;=%"
"""What a path keeps unquoted, as httpx has it: RFC 3986's separators and sub-delimiters, and escapes as given."""
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
"""Methods httpx gives a `Content-Length: 0` when they carry no body."""


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
    """A thin, typed client for Intercom's API. Close it with `aclose()` (or `async with`).

    With a `transport` (tests), every request goes through it. Refuses (ConfigError) a base URL that would send the
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
        self._channel: _Channel
        if transport is None and not proxy_configured(config.base_url):
            self._channel = _DirectChannel(config, H11Transport(max_connections=config.max_connections))
        else:
            self._channel = _HttpxChannel(config, transport)

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
        if body is not None:
            content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
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
            status, headers, answer = await self._send(method, path, endpoint, content, params, span)
        return IntercomResponse(status=status, headers=headers, body=answer, endpoint=endpoint)

    async def _send(
        self,
        method: str,
        path: str,
        endpoint: str,
        content: bytes | None,
        params: Mapping[str, str] | None,
        span: Span,
    ) -> _Answer:
        failure: RetryableError | None = None
        started = time.perf_counter()
        try:
            answer = await self._channel.send(method, path, params, content)
        except httpx.TransportError as exc:
            failure = _transport_failure(exc, endpoint)
        except BaseException:  # cancelled (a stop) or failed oddly: no answer will release the limiter's probe
            if self._limiter is not None:
                self._limiter.release()
            raise
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
        status, headers, _ = answer
        self._metrics.intercom_call(endpoint, status, elapsed)
        if self._recent is not None:
            self._recent.call(method, endpoint, status, elapsed, headers.get("x-request-id", ""))
        if self._limiter is not None:
            self._limiter.observe(headers, status)
        span.set_attribute(spans.ATTR_HTTP_STATUS, status)
        if request_id := headers.get("x-request-id"):
            span.set_attribute(spans.ATTR_INTERCOM_REQUEST_ID, request_id)
        if (remaining := headers.get("x-ratelimit-remaining")) is not None and remaining.isdigit():
            span.set_attribute(spans.ATTR_INTERCOM_RATELIMIT_REMAINING, int(remaining))
        if status >= 400:
            span.set_attribute(spans.ATTR_ERROR_TYPE, str(status))
            span.set_status(Status(StatusCode.ERROR))
        return answer

    def set_token(self, token: Secret) -> None:
        """Use `token` from the next request on (a rotated token file)."""
        self._channel.set_token(token)

    async def aclose(self) -> None:
        await self._channel.aclose()

    async def __aenter__(self) -> IntercomClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_Answer = tuple[int, Mapping[str, str], bytes]
"""(status, headers by any-case name, body)."""


class _Channel(Protocol):
    """How requests reach Intercom: `send` raises httpx's `TransportError`s."""

    async def send(
        self, method: str, path: str, params: Mapping[str, str] | None, content: bytes | None
    ) -> _Answer: ...

    def set_token(self, token: Secret) -> None: ...

    async def aclose(self) -> None: ...


def _fixed_headers(config: IntercomConfig) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {config.token.reveal()}",
        "Intercom-Version": config.api_version,
        "Accept": "application/json",
        "User-Agent": f"intercom-sidecar/{__version__}",
    }


class _DirectChannel:
    """h11 requests built here, sent through `H11Transport.exchange`."""

    def __init__(self, config: IntercomConfig, transport: H11Transport) -> None:
        parts = urlsplit(config.base_url)
        scheme = parts.scheme.encode("ascii")
        default_port = 443 if scheme == b"https" else 80
        self._origin: Origin = (scheme, parts.hostname or "", parts.port or default_port)
        self._prefix = parts.path.rstrip("/")
        self._transport = transport
        timeout = config.timeout_seconds
        self._timeouts: Timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        explicit = parts.port is not None and parts.port != default_port
        self._host = (f"{host}:{parts.port}" if explicit else host).encode("idna")
        self._headers: list[tuple[bytes, bytes]] = []
        self._config = config
        self.set_token(config.token)

    def set_token(self, token: Secret) -> None:
        fixed = _fixed_headers(self._config) | {"Authorization": f"Bearer {token.reveal()}"}
        self._headers = [(b"Host", self._host)] + [(name.encode(), value.encode()) for name, value in fixed.items()]

    async def send(self, method: str, path: str, params: Mapping[str, str] | None, content: bytes | None) -> _Answer:
        target = quote(self._prefix + path, safe=_PATH_SAFE)
        if params:
            target = f"{target}?{urlencode(params)}"
        headers = self._headers
        if content is not None:
            headers = [*headers, (b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(content))]
        elif method in _METHODS_WITH_BODY:  # as httpx does: a POST without a body still says its length
            headers = [*headers, (b"Content-Length", b"0")]
        try:
            request = h11.Request(method=method, target=target, headers=headers)
        except h11.LocalProtocolError:  # a header h11 refuses (a token with a line break, say): not quoted here
            raise httpx.LocalProtocolError("a request header was refused") from None
        answer = await self._transport.exchange(self._origin, request, content or b"", self._timeouts)
        return answer.status, _ResponseHeaders(answer.headers), answer.body

    async def aclose(self) -> None:
        await self._transport.aclose()


class _HttpxChannel:
    """httpx clients: an injected transport (tests), or httpcore when a proxy is configured."""

    def __init__(self, config: IntercomConfig, transport: httpx.AsyncBaseTransport | None) -> None:
        # httpcore's pool bookkeeping costs CPU per request in proportion to its size (PERF-NOTES: 0.4 ms per
        # call at 8 connections, 1.9 ms at 32), so its connections are split over several small pools used in
        # turn rather than held in one large one. An injected transport serves every client alike: one pool.
        pools = 1 if transport is not None else -(-config.max_connections // _CONNECTIONS_PER_POOL)
        self._pools = [
            httpx.AsyncClient(
                base_url=config.base_url,
                headers=_fixed_headers(config),
                timeout=httpx.Timeout(config.timeout_seconds),
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                transport=transport,
            )
            for size in _split(config.max_connections, pools)
        ]
        self._next_pool = itertools.cycle(self._pools)

    async def send(self, method: str, path: str, params: Mapping[str, str] | None, content: bytes | None) -> _Answer:
        headers = {"Content-Type": "application/json"} if content is not None else None
        response = await next(self._next_pool).request(method, path, content=content, headers=headers, params=params)
        return response.status_code, response.headers, response.content

    def set_token(self, token: Secret) -> None:
        for pool in self._pools:
            pool.headers["Authorization"] = f"Bearer {token.reveal()}"

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class _ResponseHeaders(Mapping[str, str]):
    """Headers as h11 reads them (names lowercased), looked up by a name in any case; repeats joined by ", "."""

    __slots__ = ("_items",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        items: dict[str, str] = {}
        for name, value in raw:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            items[key] = f"{items[key]}, {text}" if key in items else text
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


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
