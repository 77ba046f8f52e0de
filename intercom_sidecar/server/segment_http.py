"""The Segment HTTP tracking API (`INTERCOM_SIDECAR_SEGMENT_LISTEN`), so Segment's own SDKs can send here.

    POST /v1/{identify,track,page,screen,group,alias,batch,import} -> auth -> segment_body -> Intake -> answer

Events go through the same `Intake` as gRPC ones (validation, dedupe, spool, spans, acks). A request is answered
once every event in it has its ack, so a 200 means every event it names was taken (durable in the spool):

| acks                                      | status | why                                                    |
| ----------------------------------------- | ------ | ------------------------------------------------------ |
| all ACCEPTED, DUPLICATE or FILTERED       | 200    | `{"success": true}`, as Segment answers                 |
| any RETRY_LATER (queue full, paused, ...) | 429    | with `Retry-After`: SDKs back off and send the request |
|                                           |        | again; the events already taken come back DUPLICATE    |
| none taken (every event INVALID)          | 400    | SDKs drop the request: sending it again cannot help    |
| some taken, some INVALID                  | 200    | `"success": false` and a message: the valid events are |
|                                           |        | taken, and a 400 would make an SDK report them lost    |

Request-level problems (bad gzip or JSON, over 500 KB, no `batch` list) are 400, a body over 500 KB before
decompression 413 (both dropped by SDKs), a missing or wrong write key 401, and requests arriving while the
sidecar stops 503. Every answer is JSON in Segment's shape (`success`, and `code` and `message` on errors) plus
our `acks`: one per event, in request order, with status, reason and trace id. SDKs ignore it; curl users see it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from opentelemetry.context import Context

from intercom_sidecar.config import SegmentConfig, read_segment_write_keys
from intercom_sidecar.config_secrets import FileWatch, Secret
from intercom_sidecar.config_values import split_listen
from intercom_sidecar.errors import ConfigError, InvalidEventError
from intercom_sidecar.http_server import HttpServer, Request, Response
from intercom_sidecar.intake import Intake
from intercom_sidecar.model.acks import AckInfo, AckStatus
from intercom_sidecar.model.from_proto import DecodeLimits
from intercom_sidecar.server.segment_body import (
    BATCH_ROUTES,
    CALL_ROUTES,
    MAX_REQUEST_BYTES,
    BadRequestError,
    Item,
    parse_request,
)
from intercom_sidecar.server.submit import collect_acks, take_event, take_unreadable
from intercom_sidecar.telemetry.logs import register_secret
from intercom_sidecar.telemetry.spans import context_from_carrier

__all__ = ["SegmentHttpServer", "WriteKeys", "answer"]

_log = logging.getLogger(__name__)

_ROUTES: Final = frozenset(CALL_ROUTES) | BATCH_ROUTES
_TAKEN: Final = frozenset({AckStatus.ACCEPTED, AckStatus.DUPLICATE, AckStatus.FILTERED, AckStatus.DELIVERED})
_JSON = "application/json"
_SHUTDOWN_RETRY_AFTER = 1
_STOP_WAIT_SECONDS = 5.0
"""How long `stop()` lets requests already taken write their answers."""


class WriteKeys:
    """The accepted write keys; with none, every caller is accepted (the server is then loopback-only).

    Keys from a file (`INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE`) follow it: a request after the file changed is
    judged by the new keys; a file that became unreadable or empty keeps the old keys in use, reported once."""

    def __init__(self, keys: Sequence[Secret], path: Path | None = None) -> None:
        self._keys = tuple(key.reveal().encode() for key in keys)
        self._watch = FileWatch(path) if path is not None else None

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def allows(self, authorization: str | None) -> bool:
        """True when `authorization` is `Basic base64(writeKey:)` with an accepted key (compared in constant
        time with every key), or when no key is configured."""
        if self._watch is not None and self._watch.changed():
            self._reread(self._watch.path)
        if not self._keys:
            return True
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user = base64.b64decode(credentials.strip(), validate=True).partition(b":")[0]
        except (binascii.Error, ValueError):
            return False
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(user, key)
        return found

    def _reread(self, path: Path) -> None:
        try:
            keys = read_segment_write_keys(path)
        except ConfigError as error:
            _log.warning("Keeping the current Segment write keys: %s.", error)
            return
        for key in keys:
            register_secret(key.reveal())
        revealed = tuple(key.reveal().encode() for key in keys)
        if revealed != self._keys:
            self._keys = revealed
            _log.warning("Picked up %d Segment write key(s) from `%s`.", len(revealed), path)


class SegmentHttpServer:
    """`await start()` serves the API on the configured address; `close()` turns new requests away with 503;
    `await stop()` lets requests under way answer, then closes every connection. Idempotent."""

    def __init__(self, intake: Intake, limits: DecodeLimits, config: SegmentConfig) -> None:
        self._intake = intake
        self._limits = limits
        self._config = config
        self._keys = WriteKeys(config.write_keys, config.write_keys_file)
        self._http = HttpServer(
            self._handle,
            allow_non_loopback=self._keys.required,
            max_body_bytes=MAX_REQUEST_BYTES,
            error_body=_error_body,
        )
        self._closing = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> int:
        """Listen on the configured `HOST:PORT` (port 0 picks one); the bound port. ConfigError if it cannot."""
        try:
            _, bound = await self._http.start(*split_listen(self._config.listen))
        except (OSError, ValueError) as error:
            problem = getattr(error, "strerror", None) or str(error)
            raise ConfigError("INTERCOM_SIDECAR_SEGMENT_LISTEN", f"cannot listen: {problem}") from None
        return bound

    def close(self) -> None:
        """From now on new requests get 503 (and keep-alive connections close after their answer)."""
        self._closing = True
        self._http.closing = True

    async def stop(self, wait_seconds: float = _STOP_WAIT_SECONDS) -> None:
        """Refuse new requests, answer those under way (for at most `wait_seconds`), then stop listening."""
        self.close()
        try:
            await asyncio.wait_for(self._idle.wait(), wait_seconds)
        except TimeoutError:
            _log.warning("Closing the Segment HTTP API with %d requests unanswered.", self._in_flight)
        await self._http.stop()

    async def _handle(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path not in _ROUTES:
            return _json(404, _error("not_found", f"no such endpoint: {request.path} (POST /v1/batch, /v1/track, ...)"))
        if request.method != "POST":
            response = _json(405, _error("method_not_allowed", f"{request.method} is not allowed; use POST"))
            response.headers.append(("allow", "POST"))
            return response
        if not self._keys.allows(request.headers.get("authorization")):
            response = _json(401, _error("unauthorized", "missing or unknown write key (send it as basic auth user)"))
            response.headers.append(("www-authenticate", 'Basic realm="intercom-sidecar"'))
            return response
        if self._closing:
            return _retry_later(503, "the sidecar is shutting down; send the request again", _SHUTDOWN_RETRY_AFTER)
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._take(path, request)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _take(self, path: str, request: Request) -> Response:
        try:
            items = parse_request(
                path,
                request.body,
                request.headers.get("content-encoding", ""),
                max_event_bytes=self._limits.max_event_bytes,
            )
        except BadRequestError as error:
            return _json(400, _error("invalid_request", str(error)))
        parent = context_from_carrier(request.headers)
        acks = await collect_acks(items, lambda item, deliver: self._take_item(item, parent, deliver))
        return answer([item.label for item in items], acks)

    def _take_item(self, item: Item, parent: Context | None, deliver: Callable[[AckInfo], None]) -> AckInfo | None:
        if item.message is not None:
            return take_event(self._intake, item.message, self._limits, deliver, wait=False, parent=parent)
        problem = item.problem or InvalidEventError("event", "could not be read")
        return take_unreadable(self._intake, item.message_id, problem, parent=parent)


def answer(labels: Sequence[str], acks: Sequence[AckInfo]) -> Response:
    """The response to a request whose events (named by `labels`) got `acks`; see the module's table."""
    body: dict[str, Any] = {"success": True, "acks": [_ack_json(ack) for ack in acks]}
    retry = [ack for ack in acks if ack.status is AckStatus.RETRY_LATER]
    if retry:
        seconds = max(ack.retry_after or 1.0 for ack in retry)
        message = f"{len(retry)} of {len(acks)} events were not taken ({retry[0].reason}); send the request again"
        return _retry_later(429, message, seconds, body)
    refused = [(label, ack) for label, ack in zip(labels, acks, strict=True) if ack.status not in _TAKEN]
    if not refused:
        return _json(200, body)
    label, first = refused[0]
    detail = f"{label}: {first.reason}" if len(acks) > 1 else first.reason
    if len(refused) == len(acks):
        return _json(400, {**_error("invalid_request", detail), "acks": body["acks"]})
    message = f"{len(refused)} of {len(acks)} events were not taken (first: {detail}); the others were"
    return _json(200, {**_error("partially_invalid", message), "acks": body["acks"]})


def _ack_json(ack: AckInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {"messageId": ack.message_id, "status": ack.status.value, "traceId": ack.trace_id}
    if ack.reason:
        entry["reason"] = ack.reason
    if ack.retry_after is not None:
        entry["retryAfter"] = ack.retry_after
    return entry


def _retry_later(status: int, message: str, seconds: float, body: dict[str, Any] | None = None) -> Response:
    response = _json(status, {**(body or {}), **_error("retry_later", message)})
    response.headers.append(("retry-after", str(max(1, math.ceil(seconds)))))
    return response


def _error(code: str, message: str) -> dict[str, Any]:
    """Segment's error shape; its SDKs read `code` and `message` into the error they log."""
    return {"success": False, "code": code, "message": message}


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status, json.dumps(body).encode(), [("content-type", _JSON)])


def _error_body(status: int, message: str) -> tuple[str, bytes]:
    """What the HTTP server itself answers (malformed HTTP 400, a body over 500 KB 413, a bug 500)."""
    code = {413: "request_too_large", 500: "internal_error"}.get(status, "invalid_request")
    if status == 413:
        message = f"{message}: the limit is {MAX_REQUEST_BYTES} bytes ({MAX_REQUEST_BYTES // 1024} KB) per request"
    return _JSON, json.dumps(_error(code, message)).encode()
