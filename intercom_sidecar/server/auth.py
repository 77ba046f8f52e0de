"""Shared-secret authentication of gRPC calls: `authorization: Bearer <token>` on every call but health.

For pods where more than one tenant can reach the sidecar's address. With `INTERCOM_SIDECAR_AUTH_TOKEN_FILE` (or
`INTERCOM_SIDECAR_AUTH_TOKEN`) set, a call without the right token ends with UNAUTHENTICATED before the servicer
sees it. The message says what is missing and never repeats what was sent. The comparison takes the same time
however much of the token matches (`hmac.compare_digest`). `grpc.health.v1` stays open for the kubelet's probes.

The token file is looked at again (a stat, a few microseconds) on each call, and read when it changed: a rotated
token is in use from the next call on. An unreadable or empty new file leaves the current token in use, and is
reported once.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from intercom_sidecar.config import Secret, ServerConfig, read_auth_token_file
from intercom_sidecar.config_secrets import FileWatch
from intercom_sidecar.errors import ConfigError
from intercom_sidecar.telemetry.logs import register_secret

__all__ = ["OPEN_SERVICES", "BearerTokenInterceptor", "TokenSource", "auth_interceptors"]

_log = logging.getLogger(__name__)

OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
"""Services served without a token: the kubelet's probes cannot carry one."""

_SCHEME = "bearer"
_MISSING = "this sidecar requires `authorization: Bearer <token>` metadata (its INTERCOM_SIDECAR_AUTH_TOKEN)"
_WRONG = "the bearer token in `authorization` is not this sidecar's INTERCOM_SIDECAR_AUTH_TOKEN"
_MALFORMED = "`authorization` must be `Bearer <token>`, sent once"


class TokenSource:
    """The current token: the configured one, or what the token file holds now."""

    def __init__(self, token: Secret, path: Path | None = None) -> None:
        self._token = token
        self._expected = token.reveal().encode()
        self._watch = FileWatch(path) if path is not None else None

    def expected(self) -> bytes:
        if self._watch is not None and self._watch.changed():
            self._reread(self._watch.path)
        return self._expected

    def _reread(self, path: Path) -> None:
        try:
            token = read_auth_token_file(path)
        except ConfigError as error:
            _log.warning("Keeping the current gRPC auth token: %s.", error)
            return
        if token != self._token:
            register_secret(token.reveal())
            self._token, self._expected = token, token.reveal().encode()
            _log.warning("Picked up a new gRPC auth token from `%s`.", path)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuse calls without the right bearer token with UNAUTHENTICATED; services in `open_services` pass."""

    def __init__(self, tokens: TokenSource, open_services: frozenset[str] = OPEN_SERVICES) -> None:
        self._tokens = tokens
        self._open = open_services
        self._refused = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").partition("/")[0]
        if handler is None or service in self._open:
            return handler
        problem = self._problem(handler_call_details.invocation_metadata)
        if problem is None:
            return handler
        self._refused += 1
        if self._refused == 1:
            _log.warning("Refused a call to `%s`: %s; later refusals are logged at DEBUG.", service, problem)
        else:
            _log.debug("Refused a call to `%s`: %s.", service, problem)
        return _refusal(handler, problem)

    def _problem(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
        values = [value for key, value in metadata or () if key == "authorization"]
        if not values:
            return _MISSING
        if len(values) > 1 or not isinstance(values[0], str):
            return _MALFORMED
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != _SCHEME or not token.strip():
            return _MALFORMED
        sent = token.strip().encode("utf-8", "replace")
        return None if hmac.compare_digest(sent, self._tokens.expected()) else _WRONG


def auth_interceptors(server: ServerConfig) -> list[grpc.aio.ServerInterceptor]:  # type: ignore[type-arg]
    """The interceptors the API server needs: the bearer-token check when a token is configured, else none."""
    if server.auth_token is None:
        return []
    return [BearerTokenInterceptor(TokenSource(server.auth_token, server.auth_token_file))]


def _refusal(handler: grpc.RpcMethodHandler, problem: str) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    """A handler of the same shape as `handler` that ends the call with UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # type: ignore[type-arg]
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        yield  # unreachable: abort raises; the yield makes this the async generator a streaming reply needs

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(
        refuse_stream if handler.response_streaming else refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
