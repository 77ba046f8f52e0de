"""The live event view on the admin address (`INTERCOM_SIDECAR_ADMIN_LISTEN`): one static page and its JSON API.

    GET  /                          the page (`static/index.html`, with `/static/app.js` and `/static/app.css`)
    GET  /api/events?since=REV      recent events changed after revision REV, newest first, and the new revision
    GET  /api/status                queue depth and age, in flight, pause, rate limit, event counts
    GET  /api/dead-letters          the dead letters, oldest first (at most 500)
    POST /api/dead-letters/replay   {"message_ids": [...]} or {"all": true}: back to the queue at once

Security. The view shows user ids and can replay dead letters, so it listens on loopback (reach it in Kubernetes
with `kubectl port-forward`), and:
- every route but `/metrics` answers only requests whose `Host` is a loopback name or the configured listen host,
  so a web page whose DNS name was rebound to 127.0.0.1 gets nothing (a rebinding attack makes the browser treat
  the sidecar as that page's own origin, where custom headers are allowed);
- the replay `POST` needs `X-Intercom-Sidecar: replay` and `Content-Type: application/json`: a form or a fetch from
  another origin cannot send those without a CORS preflight, which is never answered;
- the page is framed by nobody (`X-Frame-Options: DENY`), runs only its own script (a strict
  `Content-Security-Policy`), and writes data into the page as text only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qsl

from intercom_sidecar.config import ServerConfig
from intercom_sidecar.config_values import is_loopback_host, split_listen
from intercom_sidecar.delivery.pipeline import Pipeline
from intercom_sidecar.delivery.ratelimit import RateLimiter
from intercom_sidecar.delivery.spool import DeadLetter, DeadLetterFilter, Spool, SpooledEvent
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.http_server import Handler, Request, Response
from intercom_sidecar.server.admin_http import AdminServer
from intercom_sidecar.telemetry.metrics import Metrics
from intercom_sidecar.telemetry.recent import RecentEvents

__all__ = ["REPLAY_HEADER", "ViewSources", "event_view_server", "install_event_view"]

REPLAY_HEADER: Final = ("x-intercom-sidecar", "replay")
"""The header a replay request must carry (a cross-origin page cannot send it without a preflight)."""
MAX_DEAD_LETTERS_SHOWN: Final = 500
MAX_REPLAY_IDS: Final = 1000
_REPLAY_CHUNK: Final = 1000

_JSON: Final = "application/json"
_PAGE_HEADERS: Final = [
    ("content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
     "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
]  # fmt: skip
_STATIC: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}


@dataclass(frozen=True, slots=True)
class ViewSources:
    """What the view reads, and `requeue`: queue events the spool moved back from the dead letters."""

    recent: RecentEvents
    spool: Spool
    spooler: Spooler
    pipeline: Pipeline
    limiter: RateLimiter
    metrics: Metrics
    requeue: Callable[[Sequence[SpooledEvent]], None]


def event_view_server(sources: ViewSources, metrics: Handler, server: ServerConfig) -> AdminServer:
    """The admin address: the event view, its API and `/metrics` (`metrics`). Not started yet."""
    admin = AdminServer(allow_non_loopback=server.insecure_listen)
    admin.route("/metrics", metrics)
    install_event_view(admin, sources, split_listen(server.admin_listen)[0])
    return admin


def install_event_view(server: AdminServer, sources: ViewSources, listen_host: str) -> None:
    """Add the page and its API to `server`. `listen_host` is also accepted as a `Host` (an insecure listen)."""
    view = _EventView(sources)
    allowed = {listen_host.lower()}
    for path, (name, content_type) in _STATIC.items():
        server.route(path, _guarded(allowed, _static(name, content_type)))
    server.route("/api/events", _guarded(allowed, view.events))
    server.route("/api/status", _guarded(allowed, view.status))
    server.route("/api/dead-letters", _guarded(allowed, view.dead_letters))
    server.route("/api/dead-letters/replay", _guarded(allowed, view.replay), methods=("POST",))


class _EventView:
    def __init__(self, sources: ViewSources) -> None:
        self._sources = sources

    async def events(self, request: Request) -> Response:
        since = _query(request).get("since", "0")
        if not since.isdigit():
            return _error(400, f"since must be a revision number (a non-negative integer), got {since[:40]!r}")
        recent = self._sources.recent
        # Read and serialised in one go on the event loop: no hook runs in between.
        changed = recent.since(int(since), limit=recent.capacity)
        return _json(
            200,
            {
                "revision": recent.revision,
                "capacity": recent.capacity,
                "oldest_id": recent.oldest_id,
                "events": [record.to_json() for record in changed],
            },
        )

    async def status(self, request: Request) -> Response:
        s = self._sources
        now = time.time()
        depth, size = s.spool.depth()
        remaining, reset_at, blocked_until = s.limiter.state()
        return _json(
            200,
            {
                "now": now,
                "queue_depth": depth,
                "queue_bytes": size,
                "oldest_age_seconds": round(s.spooler.oldest_age(now), 3),
                "in_flight": s.pipeline.concurrency.in_flight,
                "concurrency_limit": s.pipeline.concurrency.limit,
                "paused": s.pipeline.pause_reason,
                "rate_limit": {
                    "remaining": remaining,
                    "reset_at": reset_at,
                    "reset_in_seconds": None if reset_at is None else round(max(0.0, reset_at - now), 3),
                    "blocked_until": blocked_until,
                    "waited_seconds": round(s.limiter.waited_seconds, 3),
                },
                "counts": s.metrics.totals(),
            },
        )

    async def dead_letters(self, request: Request) -> Response:
        letters = await self._sources.spool.list_dead_letters(limit=MAX_DEAD_LETTERS_SHOWN + 1)
        return _json(
            200,
            {
                "dead_letters": [_letter_json(letter) for letter in letters[:MAX_DEAD_LETTERS_SHOWN]],
                "truncated": len(letters) > MAX_DEAD_LETTERS_SHOWN,
            },
        )

    async def replay(self, request: Request) -> Response:
        name, wanted = REPLAY_HEADER
        if request.headers.get(name, "").strip().lower() != wanted:
            return _error(403, f"a replay needs the header `X-Intercom-Sidecar: {wanted}`")
        if request.headers.get("content-type", "").partition(";")[0].strip().lower() != _JSON:
            return _error(415, "a replay needs `Content-Type: application/json`")
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            return _error(400, "the body is not JSON")
        ids, problem = _replay_request(body)
        if problem:
            return _error(400, problem)
        replayed = await (self._replay_all() if ids is None else self._replay_ids(ids))
        return _json(200, {"replayed": replayed})

    async def _replay_ids(self, message_ids: Sequence[str]) -> int:
        where = DeadLetterFilter(message_ids=tuple(message_ids))  # one query, not one per id
        letters = await self._sources.spool.list_dead_letters(where, limit=_REPLAY_CHUNK * len(message_ids))
        return await self._replay([letter.seq for letter in letters])

    async def _replay_all(self) -> int:
        # Only what was dead before the request (a replayed event that fails again is not replayed in a loop), page
        # by page in seq order, so letters that cannot be replayed (kept without their payload, or encrypted with
        # a key the sidecar does not have) are passed over rather than read again.
        until = time.time()
        replayed, last = 0, 0
        while letters := await self._sources.spool.list_dead_letters(
            DeadLetterFilter(until=until, after_seq=last), limit=_REPLAY_CHUNK
        ):
            last = letters[-1].seq
            replayed += await self._replay([letter.seq for letter in letters])
        return replayed

    async def _replay(self, seqs: Sequence[int]) -> int:
        if not seqs:
            return 0
        events = await self._sources.spool.replay(seqs)
        self._sources.requeue(events)  # queued now, not at the next poll for CLI replays
        return len(events)


def _replay_request(body: Any) -> tuple[list[str] | None, str]:
    """(message ids, or None for all; a problem with the body, or "")."""
    if not isinstance(body, dict):
        return None, 'the body must be {"message_ids": [...]} or {"all": true}'
    if body.get("all") is True and "message_ids" not in body:
        return None, ""
    ids = body.get("message_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(item, str) and item for item in ids):
        return None, 'message_ids must be a non-empty list of message ids (or send {"all": true})'
    if len(ids) > MAX_REPLAY_IDS:
        return None, f'message_ids lists {len(ids)} ids; the limit is {MAX_REPLAY_IDS} (or send {{"all": true}})'
    return list(dict.fromkeys(ids)), ""


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "seq": letter.seq,
        "message_id": letter.message_id,
        "user_id": letter.user_key,
        "call_type": letter.call_type,  # stored in clear with the letter: its payload is not decoded for the view
        "accepted_at": letter.accepted_at,
        "dead_at": letter.dead_at,
        "reason": letter.reason,
        "status": letter.status,
        "code": letter.code,
        "attempts": letter.attempts,
        "trace_id": letter.trace_id,
    }


def _guarded(allowed_hosts: set[str], handler: Handler) -> Handler:
    """Answer only requests addressed to a loopback name or to the listen host (see the module docstring)."""

    async def guard(request: Request) -> Response:
        host = _host_name(request.headers.get("host", ""))
        if not (is_loopback_host(host) or host in allowed_hosts):
            return _error(421, "this address answers requests for localhost only (use `kubectl port-forward`)")
        return await handler(request)

    return guard


def _host_name(header: str) -> str:
    """`Host` without its port: `127.0.0.1:8090` -> `127.0.0.1`, `[::1]:8090` -> `::1`, `LocalHost` -> `localhost`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _static(name: str, content_type: str) -> Handler:
    body = (resources.files("intercom_sidecar.admin") / "static" / name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(200, body, [("content-type", content_type), *_PAGE_HEADERS])

    return serve


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.query_string))


def _json(status: int, data: Any) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, body, [("content-type", _JSON), *_PAGE_HEADERS])


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})
