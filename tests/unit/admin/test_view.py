"""The event view's routes over a real loopback socket: the page, the JSON API, replay and its guards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.admin.view import ViewSources, event_view_server
from intercom_sidecar.config import QueueConfig, RetryConfig, ServerConfig
from intercom_sidecar.delivery.clock import SystemClock
from intercom_sidecar.delivery.pipeline import Pipeline
from intercom_sidecar.delivery.ratelimit import RateLimiter
from intercom_sidecar.delivery.spool import SpooledEvent, SpoolEntry
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.http_server import Request, Response
from intercom_sidecar.mapping.plan import Plan
from intercom_sidecar.telemetry.metrics import Metrics
from intercom_sidecar.telemetry.recent import RecentEvents

pytestmark = pytest.mark.timeout(10)

REPLAY = {"X-Intercom-Sidecar": "replay", "Content-Type": "application/json"}
TRACER = TracerProvider().get_tracer("test")


class NeverSends:
    async def send(self, plan: Plan) -> None:  # pragma: no cover - nothing is submitted in these tests
        raise AssertionError("not expected")


@dataclass
class View:
    client: httpx.AsyncClient
    spool: MemorySpool
    recent: RecentEvents
    metrics: Metrics
    limiter: RateLimiter
    pipeline: Pipeline
    requeued: list[SpooledEvent] = field(default_factory=list)

    async def dead_letter(self, message_id: str, *, user_id: str = "u1", event: str = "Order Completed") -> int:
        payload = event_pb2.Event(message_id=message_id, user_id=user_id, track=event_pb2.Track(event=event))
        [seq] = await self.spool.append(
            [SpoolEntry(message_id, user_id, payload.SerializeToString(), "ab" * 16, 1_700_000_000.0)]
        )
        assert seq is not None
        self.spool.dead_letter(seq, reason="intercom 422 parameter_invalid: no", status=422, code="parameter_invalid",
                               attempts=1)  # fmt: skip
        return seq


@pytest.fixture
async def view() -> AsyncIterator[View]:
    spool = MemorySpool(max_events=100, max_bytes=1 << 20)
    await spool.open()
    metrics = Metrics()
    pipeline = Pipeline(NeverSends(), QueueConfig(workers=2), RetryConfig(), metrics=metrics)
    spooler = Spooler(spool, pipeline, metrics)
    limiter = RateLimiter(SystemClock())
    recent = RecentEvents(3)
    requeued: list[SpooledEvent] = []

    def requeue(events: Sequence[SpooledEvent]) -> None:
        requeued.extend(events)

    async def metrics_route(request: Request) -> Response:
        return Response(200, b"scrape\n")

    sources = ViewSources(recent, spool, spooler, pipeline, limiter, metrics, requeue)
    server = event_view_server(sources, metrics_route, ServerConfig(admin_listen="127.0.0.1:0"))
    port = await server.start("127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield View(client, spool, recent, metrics, limiter, pipeline, requeued)
    await server.stop()
    await spool.close()


async def test_the_page_and_its_files_are_served_with_a_strict_policy(view: View) -> None:
    page = await view.client.get("/")
    script = await view.client.get("/static/app.js")
    style = await view.client.get("/static/app.css")
    assert page.status_code == script.status_code == style.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/static/app.js"' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text.replace("(never innerHTML)", ""), "data is written as text only"
    assert "http://" not in page.text + script.text + style.text and "https://" not in page.text, "works offline"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert (await view.client.get("/metrics")).text == "scrape\n", "the admin address also serves /metrics"


async def test_events_are_listed_newest_first_and_polled_with_a_cursor(view: View) -> None:
    spans = [TRACER.start_span("event") for _ in range(4)]
    for n, span in enumerate(spans):
        record = view.recent.begin(f"m{n}", span)
        assert record is not None
        record.acked("accepted", "")

    first = (await view.client.get("/api/events")).json()
    assert [event["message_id"] for event in first["events"]] == ["m3", "m2", "m1"], "the last 3 are kept"
    assert first["capacity"] == 3
    assert first["oldest_id"] == 2
    assert first["events"][0]["trace_id"] == format(spans[3].get_span_context().trace_id, "032x")
    assert first["events"][0]["ack_status"] == "accepted"

    unchanged = (await view.client.get(f"/api/events?since={first['revision']}")).json()
    assert unchanged["events"] == []
    view.recent.since(0)[1].finished("delivered", "", None, 1)  # m2
    changed = (await view.client.get(f"/api/events?since={first['revision']}")).json()
    assert [(event["message_id"], event["outcome"]) for event in changed["events"]] == [("m2", "delivered")]

    bad = await view.client.get("/api/events?since=-1")
    assert bad.status_code == 400
    assert bad.json() == {"error": "since must be a revision number (a non-negative integer), got '-1'"}


async def test_status_reports_queue_pause_rate_limit_and_counts(view: View) -> None:
    view.limiter.observe({"x-ratelimit-remaining": "80", "x-ratelimit-reset": str(2_000_000_000)}, 200)
    view.metrics.events_accepted(3)
    view.metrics.event_delivered(0.0)
    view.metrics.event_rejected()
    await view.dead_letter("m-dead")

    status = (await view.client.get("/api/status")).json()
    assert (status["queue_depth"], status["in_flight"], status["paused"]) == (0, 0, None)
    assert status["rate_limit"]["remaining"] == 80
    assert status["rate_limit"]["reset_at"] == 2_000_000_000
    assert status["rate_limit"]["blocked_until"] is None
    assert status["counts"] == {"accepted": 3, "delivered": 1, "filtered": 0, "dead_lettered": 1}


async def test_dead_letters_are_listed_with_what_an_operator_needs(view: View) -> None:
    seq = await view.dead_letter("m-dead", user_id="u9", event="Refused")
    [letter] = (await view.client.get("/api/dead-letters")).json()["dead_letters"]
    assert letter == {
        "seq": seq,
        "message_id": "m-dead",
        "user_id": "u9",
        "call_type": "track",
        "accepted_at": 1_700_000_000.0,
        "dead_at": letter["dead_at"],
        "reason": "intercom 422 parameter_invalid: no",
        "status": 422,
        "code": "parameter_invalid",
        "attempts": 1,
        "trace_id": "ab" * 16,
    }


async def test_replay_by_message_id_queues_those_letters_at_once(view: View) -> None:
    await view.dead_letter("m1")
    await view.dead_letter("m2")
    response = await view.client.post(
        "/api/dead-letters/replay", json={"message_ids": ["m2", "unknown"]}, headers=REPLAY
    )
    assert response.status_code == 200
    assert response.json() == {"replayed": 1}
    assert [event.message_id for event in view.requeued] == ["m2"]
    left = (await view.client.get("/api/dead-letters")).json()["dead_letters"]
    assert [letter["message_id"] for letter in left] == ["m1"]


async def test_replay_all(view: View) -> None:
    for n in range(3):
        await view.dead_letter(f"m{n}")
    response = await view.client.post("/api/dead-letters/replay", json={"all": True}, headers=REPLAY)
    assert response.json() == {"replayed": 3}
    assert sorted(event.message_id for event in view.requeued) == ["m0", "m1", "m2"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        ({"Content-Type": "application/json"}, b'{"all": true}', 403,
         "a replay needs the header `X-Intercom-Sidecar: replay`"),
        ({"X-Intercom-Sidecar": "other", "Content-Type": "application/json"}, b'{"all": true}', 403,
         "a replay needs the header `X-Intercom-Sidecar: replay`"),
        ({"X-Intercom-Sidecar": "replay", "Content-Type": "application/x-www-form-urlencoded"}, b"all=true", 415,
         "a replay needs `Content-Type: application/json`"),
        ({"X-Intercom-Sidecar": "replay", "Content-Type": "text/plain"}, b'{"all": true}', 415,
         "a replay needs `Content-Type: application/json`"),
        (REPLAY, b"{", 400, "the body is not JSON"),
        (REPLAY, b"[]", 400, 'the body must be {"message_ids": [...]} or {"all": true}'),
        (REPLAY, b'{"message_ids": []}', 400,
         'message_ids must be a non-empty list of message ids (or send {"all": true})'),
        (REPLAY, b'{"message_ids": [1]}', 400,
         'message_ids must be a non-empty list of message ids (or send {"all": true})'),
        (REPLAY, b'{"all": "yes"}', 400,
         'message_ids must be a non-empty list of message ids (or send {"all": true})'),
    ],
)  # fmt: skip
async def test_a_replay_without_the_header_or_json_is_refused_and_replays_nothing(
    view: View, headers: dict[str, str], body: bytes, status: int, error: str
) -> None:
    await view.dead_letter("m1")
    response = await view.client.post("/api/dead-letters/replay", content=body, headers=headers)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert view.requeued == []
    assert len((await view.client.get("/api/dead-letters")).json()["dead_letters"]) == 1


async def test_replay_is_post_only_and_preflights_are_not_answered(view: View) -> None:
    get = await view.client.get("/api/dead-letters/replay")
    preflight = await view.client.request(
        "OPTIONS",
        "/api/dead-letters/replay",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Headers": "x-intercom-sidecar"},
    )
    assert (get.status_code, preflight.status_code) == (405, 405)
    assert not any(name.startswith("access-control-") for name in preflight.headers)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8090", "10.1.2.3:8090", "127.0.0.1.evil.example"])
async def test_requests_for_another_host_name_are_refused(view: View, host: str) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: it gets nothing, not even the page."""
    for path in ("/", "/api/events", "/api/dead-letters"):
        response = await view.client.get(path, headers={"Host": host})
        assert response.status_code == 421, path
    response = await view.client.post("/api/dead-letters/replay", json={"all": True}, headers={**REPLAY, "Host": host})
    assert response.status_code == 421


@pytest.mark.parametrize("host", ["localhost:8090", "LOCALHOST", "127.0.0.1", "127.0.0.1:8090", "[::1]:8090"])
async def test_loopback_host_names_are_served(view: View, host: str) -> None:
    assert (await view.client.get("/api/status", headers={"Host": host})).status_code == 200


async def test_a_non_loopback_address_is_refused_by_the_server_itself() -> None:
    async def route(request: Request) -> Response:
        return Response(200)

    spool = MemorySpool(max_events=1, max_bytes=1024)
    pipeline = Pipeline(NeverSends(), QueueConfig(), RetryConfig())
    sources = ViewSources(
        RecentEvents(1),
        spool,
        Spooler(spool, pipeline),
        pipeline,
        RateLimiter(SystemClock()),
        Metrics(),
        lambda events: None,
    )
    server = event_view_server(sources, route, ServerConfig(admin_listen="0.0.0.0:0"))
    with pytest.raises(ValueError, match="non-loopback"):
        await server.start("0.0.0.0", 0)
