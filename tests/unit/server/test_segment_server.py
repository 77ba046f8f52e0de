"""`segment_http`: write keys, the acks -> response table, and the request handler over a stub intake."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.trace import get_current_span

from intercom_sidecar.config import Secret, SegmentConfig, read_segment_write_keys
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.http_server import Request, Response
from intercom_sidecar.model.acks import AckInfo, AckStatus
from intercom_sidecar.model.events import Event
from intercom_sidecar.model.from_proto import DecodeLimits
from intercom_sidecar.server.segment_http import SegmentHttpServer, WriteKeys, answer

LIMITS = DecodeLimits(max_event_bytes=32 * 1024, max_future_seconds=86400.0)
TRACE = "0af7651916cd43dd8448eb211c80319c"


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "allowed"),
    [
        (basic("key-1"), True),
        (basic("key-2", "any password"), True),
        ("basic " + base64.b64encode(b"key-2:").decode(), True),
        (basic("key-3"), False),
        (basic("key-1x"), False),
        (basic(""), False),
        ("Basic not*base64", False),
        ("Bearer key-1", False),
        ("", False),
        (None, False),
    ],
)
def test_write_keys(authorization: str | None, allowed: bool) -> None:
    assert WriteKeys([Secret("key-1"), Secret("key-2")]).allows(authorization) is allowed


def test_no_write_keys_lets_every_caller_in() -> None:
    keys = WriteKeys([])
    assert not keys.required
    assert keys.allows(None) and keys.allows(basic("whatever"))


def replace_file(path: Path, text: str) -> None:
    """As a Kubernetes Secret volume does: a new file renamed over the old one (a new inode)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    fresh.replace(path)


def test_write_keys_follow_their_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "write-keys"
    path.write_text("# the web app\nkey-old\n")
    keys = WriteKeys(read_segment_write_keys(path), path)
    assert keys.allows(basic("key-old"))

    replace_file(path, "key-new\n\n# rotated\n")
    assert keys.allows(basic("key-new"))
    assert not keys.allows(basic("key-old"))

    replace_file(path, "# nothing left\n")  # a broken rotation keeps the keys in use, and is reported once
    assert keys.allows(basic("key-new")) and keys.allows(basic("key-new"))
    assert not keys.allows(basic("whatever"))
    warnings = [r.getMessage() for r in caplog.records if "Keeping the current Segment write keys" in r.getMessage()]
    assert len(warnings) == 1 and "holds no write key" in warnings[0]
    assert all("key-new" not in record.getMessage() for record in caplog.records)

    path.unlink()
    assert keys.allows(basic("key-new"))
    replace_file(path, "key-third\n")
    assert keys.allows(basic("key-third")) and not keys.allows(basic("key-new"))


def ack(status: AckStatus, reason: str = "", retry_after: float | None = None, message_id: str = "m") -> AckInfo:
    return AckInfo(message_id, status, TRACE, reason, retry_after)


def decoded(response: Response) -> dict[str, Any]:
    assert ("content-type", "application/json") in response.headers
    result: dict[str, Any] = json.loads(response.body)
    return result


def test_all_taken_is_200_success_with_our_acks() -> None:
    acks = [ack(AckStatus.ACCEPTED, message_id="a"), ack(AckStatus.DUPLICATE, "seen", message_id="b")]
    acks.append(ack(AckStatus.FILTERED, "page: not sent", message_id="c"))
    response = answer(["batch[0]", "batch[1]", "batch[2]"], acks)
    assert response.status == 200
    assert decoded(response) == {
        "success": True,
        "acks": [
            {"messageId": "a", "status": "accepted", "traceId": TRACE},
            {"messageId": "b", "status": "duplicate", "traceId": TRACE, "reason": "seen"},
            {"messageId": "c", "status": "filtered", "traceId": TRACE, "reason": "page: not sent"},
        ],
    }


def test_nothing_taken_is_400_naming_the_field() -> None:
    response = answer(["track"], [ack(AckStatus.INVALID, "track.event: must not be empty")])
    assert response.status == 400
    body = decoded(response)
    assert {key: body[key] for key in ("success", "code", "message")} == {
        "success": False,
        "code": "invalid_request",
        "message": "track.event: must not be empty",
    }
    batch = answer(["batch[0]", "batch[1]"], [ack(AckStatus.INVALID, "user_id: x"), ack(AckStatus.REJECTED, "y")])
    assert (batch.status, decoded(batch)["message"]) == (400, "batch[0]: user_id: x")


def test_some_taken_is_200_without_success_so_sdks_do_not_drop_what_was_taken() -> None:
    acks = [ack(AckStatus.ACCEPTED), ack(AckStatus.INVALID, "track.event: must not be empty"), ack(AckStatus.ACCEPTED)]
    response = answer(["batch[0]", "batch[1]", "batch[2]"], acks)
    body = decoded(response)
    assert (response.status, body["success"], body["code"]) == (200, False, "partially_invalid")
    assert body["message"] == (
        "1 of 3 events were not taken (first: batch[1]: track.event: must not be empty); the others were"
    )
    assert [entry["status"] for entry in body["acks"]] == ["accepted", "invalid", "accepted"]


def test_any_retry_later_is_429_with_the_longest_retry_after_rounded_up() -> None:
    acks = [
        ack(AckStatus.ACCEPTED),
        ack(AckStatus.RETRY_LATER, "the spool is full", 1.5),
        ack(AckStatus.INVALID, "bad"),
        ack(AckStatus.RETRY_LATER, "the spool is full", 0.2),
    ]
    response = answer(["a", "b", "c", "d"], acks)
    assert response.status == 429
    assert ("retry-after", "2") in response.headers
    body = decoded(response)
    assert (body["success"], body["code"]) == (False, "retry_later")
    assert body["message"] == "2 of 4 events were not taken (the spool is full); send the request again"
    assert body["acks"][1]["retryAfter"] == 1.5


class StubIntake:
    """Records each submit; answers with `outcome(event)`: an ack now, or a future resolved by the test."""

    def __init__(self, outcome: Callable[[str, Event | InvalidEventError], AckInfo | asyncio.Future[AckInfo]]):
        self.outcome = outcome
        self.parents: list[Context | None] = []

    def submit(
        self,
        message_id: str,
        decode: Callable[[float], Event],
        payload: Callable[[str], bytes],
        deliver: Callable[[AckInfo], None],
        *,
        wait: bool,
        parent: Context | None = None,
    ) -> AckInfo | None:
        self.parents.append(parent)
        try:
            event: Event | InvalidEventError = decode(1_700_000_000.0)
        except InvalidEventError as error:
            event = error
        outcome = self.outcome(message_id, event)
        if isinstance(outcome, AckInfo):
            return outcome
        outcome.add_done_callback(lambda done: deliver(done.result()))  # later, as Intake.submit delivers
        return None


def accept_valid(message_id: str, event: Event | InvalidEventError) -> AckInfo:
    if isinstance(event, InvalidEventError):
        return AckInfo(message_id, AckStatus.INVALID, TRACE, str(event))
    return AckInfo(message_id, AckStatus.ACCEPTED, TRACE)


def server(intake: StubIntake, *keys: str) -> SegmentHttpServer:
    config = SegmentConfig(listen="127.0.0.1:0", write_keys=tuple(Secret(key) for key in keys))
    return SegmentHttpServer(intake, LIMITS, config)  # type: ignore[arg-type]


def post(path: str, body: Any, **headers: str) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request("POST", path, path, "", {k.replace("_", "-"): v for k, v in headers.items()}, raw)


TRACK = {"userId": "u1", "event": "Signed Up", "messageId": "m1"}


async def test_a_track_call_is_submitted_and_answered_200() -> None:
    intake = StubIntake(accept_valid)
    response = await server(intake)._handle(post("/v1/track", TRACK))
    assert (response.status, decoded(response)["success"]) == (200, True)
    assert decoded(response)["acks"][0]["messageId"] == "m1"


async def test_the_answer_waits_for_every_ack() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[AckInfo]] = []

    def later(message_id: str, event: Event | InvalidEventError) -> asyncio.Future[AckInfo]:
        futures.append(loop.create_future())
        return futures[-1]

    handling = asyncio.ensure_future(
        server(StubIntake(later))._handle(post("/v1/batch", {"batch": [{**TRACK, "type": "track"}] * 2}))
    )
    while len(futures) < 2:
        await asyncio.sleep(0)
    futures[0].set_result(AckInfo("m1", AckStatus.ACCEPTED, TRACE))
    await asyncio.sleep(0)
    assert not handling.done(), "answered before the second event's ack"
    futures[1].set_result(AckInfo("m1", AckStatus.DUPLICATE, TRACE))
    response = await handling
    assert [entry["status"] for entry in decoded(response)["acks"]] == ["accepted", "duplicate"]


async def test_invalid_events_go_through_the_intake_too() -> None:
    intake = StubIntake(accept_valid)
    response = await server(intake)._handle(post("/v1/batch", {"batch": [{**TRACK, "type": "track"}, 7]}))
    assert len(intake.parents) == 2, "the invalid event was counted and acked by the intake"
    assert decoded(response)["acks"][1] == {
        "messageId": "",
        "status": "invalid",
        "traceId": TRACE,
        "reason": "event: must be a JSON object",
    }


async def test_traceparent_header_is_the_events_parent() -> None:
    intake = StubIntake(accept_valid)
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01"
    await server(intake)._handle(post("/v1/track", TRACK, traceparent=traceparent))
    (parent,) = intake.parents
    assert parent is not None
    assert format(get_current_span(parent).get_span_context().trace_id, "032x") == TRACE


async def test_gzip_request() -> None:
    request = post("/v1/track", gzip.compress(json.dumps(TRACK).encode()), content_encoding="gzip")
    assert (await server(StubIntake(accept_valid))._handle(request)).status == 200


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (post("/v1/track", b"{nope"), 400, "invalid_request"),
        (post("/v1/batch", {"batch": "x"}), 400, "invalid_request"),
        (post("/v1/nope", TRACK), 404, "not_found"),
        (Request("GET", "/v1/batch", "/v1/batch", "", {}, b""), 405, "method_not_allowed"),
    ],
)
async def test_bad_requests(request_: Request, status: int, code: str) -> None:
    intake = StubIntake(accept_valid)
    response = await server(intake)._handle(request_)
    assert (response.status, decoded(response)["code"]) == (status, code)
    assert intake.parents == [], "nothing was submitted"


async def test_trailing_slash_is_the_same_route() -> None:
    assert (await server(StubIntake(accept_valid))._handle(post("/v1/track/", TRACK))).status == 200


async def test_a_wrong_or_missing_key_is_401_and_nothing_is_submitted() -> None:
    intake = StubIntake(accept_valid)
    sidecar = server(intake, "wk-1")
    for headers in ({}, {"authorization": basic("wk-2")}):
        response = await sidecar._handle(post("/v1/track", TRACK, **headers))
        assert (response.status, decoded(response)["code"]) == (401, "unauthorized")
        assert ("www-authenticate", 'Basic realm="intercom-sidecar"') in response.headers
        assert b"wk-" not in response.body
    assert intake.parents == []
    assert (await sidecar._handle(post("/v1/track", TRACK, authorization=basic("wk-1")))).status == 200


async def test_after_close_new_requests_get_503_with_retry_after() -> None:
    intake = StubIntake(accept_valid)
    sidecar = server(intake)
    sidecar.close()
    response = await sidecar._handle(post("/v1/track", TRACK))
    assert (response.status, decoded(response)["code"]) == (503, "retry_later")
    assert ("retry-after", "1") in response.headers
    assert intake.parents == []
