"""The Segment HTTP API, driven by Segment's real SDKs (segment-analytics-python, @segment/analytics-node) and by
plain HTTP, delivering to the fake Intercom."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import QueueConfig, Secret, SegmentConfig, SpoolConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, SidecarFactory

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parent / "segment_node"
WRITE_KEY = "wk-e2e-3f9a1c"
DEADLINE = 30.0


def url(sidecar: Sidecar) -> str:
    return f"http://127.0.0.1:{sidecar.app.segment_port}"


async def with_key(start_sidecar: SidecarFactory, **sections: Any) -> Sidecar:
    return await start_sidecar(segment=SegmentConfig(listen="127.0.0.1:0", write_keys=(Secret(WRITE_KEY),)), **sections)


async def delivered(sidecar: Sidecar) -> None:
    await asyncio.wait_for(sidecar.app.wait_idle(), DEADLINE)


# segment-analytics-python -------------------------------------------------------------------------------------


class PythonSdk:
    """A real `segment.analytics.Client`; its HTTP calls run on its own thread, so the test awaits them in threads
    to leave the event loop (which serves the sidecar) free."""

    def __init__(self, host: str, write_key: str, *, gzip: bool) -> None:
        self.errors: list[tuple[Exception, list[dict[str, Any]]]] = []
        self.client = Client(
            write_key=write_key,
            host=host,
            gzip=gzip,
            max_retries=1,
            upload_interval=0.05,
            on_error=lambda error, batch: self.errors.append((error, batch)),
        )

    async def flush(self) -> None:
        await asyncio.wait_for(asyncio.to_thread(self.client.flush), DEADLINE)

    async def close(self) -> None:
        await asyncio.wait_for(asyncio.to_thread(self.client.shutdown), DEADLINE)


@pytest.fixture
def python_sdks() -> Iterator[list[PythonSdk]]:
    sdks: list[PythonSdk] = []
    yield sdks
    for sdk in sdks:
        sdk.client.join()


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "plain"])
async def test_python_sdk_delivers_every_call_type(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom, python_sdks: list[PythonSdk], compressed: bool
) -> None:
    sidecar = await with_key(start_sidecar)
    sdk = PythonSdk(url(sidecar), WRITE_KEY, gzip=compressed)
    python_sdks.append(sdk)
    sdk.client.identify("py-1", {"email": "py-1@example.com", "name": "Py One"}, message_id="py-identify")
    sdk.client.track("py-1", "Python Order", {"revenue": 9.5, "currency": "EUR", "sku": "P-1"})
    sdk.client.group("py-1", "py-company", {"name": "Python Co"})
    sdk.client.page("py-1", name="Pricing")
    sdk.client.screen("py-1", name="Home")
    sdk.client.alias("anon-py", "py-1")
    await sdk.flush()
    assert sdk.errors == []
    await delivered(sidecar)

    contact = fake_intercom.state.contact_by_external_id("py-1")
    assert contact is not None and (contact.email, contact.name) == ("py-1@example.com", "Py One")
    orders = [event for event in fake_intercom.state.events if event.event_name == "Python Order"]
    assert [event.metadata for event in orders] == [{"price": {"amount": 950, "currency": "eur"}, "sku": "P-1"}]
    assert fake_intercom.state.company_by_company_id("py-company") is not None
    spans = [span for span in sidecar.spans.get_finished_spans() if span.name == "intercom_sidecar.event"]
    assert sorted(span.attributes["segment.type"] for span in spans if span.attributes) == sorted(
        ["identify", "track", "group", "page", "screen", "alias"]
    )
    # The same events again (the SDK keeps no memory of them): the identify is a DUPLICATE, nothing is sent twice.
    sdk.client.identify("py-1", {"email": "py-1@example.com", "name": "Py One"}, message_id="py-identify")
    await sdk.flush()
    await delivered(sidecar)
    assert sdk.errors == []
    assert len(fake_intercom.state.contacts) == 1


async def test_python_sdk_with_a_wrong_key_gets_401_and_nothing_is_taken(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom, python_sdks: list[PythonSdk]
) -> None:
    sidecar = await with_key(start_sidecar)
    sdk = PythonSdk(url(sidecar), "not-the-key", gzip=True)
    python_sdks.append(sdk)
    sdk.client.track("py-2", "Never Sent")
    await sdk.flush()
    ((error, batch),) = sdk.errors
    assert isinstance(error, APIError)
    assert (error.status, error.code) == (401, "unauthorized")
    assert [message["event"] for message in batch] == ["Never Sent"]
    assert not [span for span in sidecar.spans.get_finished_spans() if span.name == "intercom_sidecar.event"]
    assert fake_intercom.state.contacts == {}


# @segment/analytics-node ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    """`npm ci` once per session, from the committed package-lock.json (node_modules is not committed)."""
    npm = shutil.which("npm")
    assert npm is not None and shutil.which("node"), "node and npm are needed to test @segment/analytics-node"
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return NODE_DIR / "script.js"


async def run_node(script: Path, host: str, write_key: str, run: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run the Node script; its exit status, the HTTP responses the SDK saw, and its standard error."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        host,
        write_key,
        run,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), DEADLINE)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, [json.loads(line) for line in out.decode().splitlines()], err.decode()


async def test_node_sdk_delivers(start_sidecar: SidecarFactory, fake_intercom: FakeIntercom, node_sdk: Path) -> None:
    sidecar = await with_key(start_sidecar)
    status, responses, stderr = await run_node(node_sdk, url(sidecar), WRITE_KEY, "a")
    assert status == 0, stderr
    assert [response["status"] for response in responses] == [200]
    assert responses[0]["url"] == f"{url(sidecar)}/v1/batch"
    await delivered(sidecar)
    contact = fake_intercom.state.contact_by_external_id("node-a")
    assert contact is not None and (contact.email, contact.name) == ("node-a@example.com", "Node User")
    orders = [event for event in fake_intercom.state.events if event.event_name == "Node Order"]
    assert [event.metadata for event in orders] == [{"price": {"amount": 1250, "currency": "usd"}, "sku": "N-1"}]
    assert fake_intercom.state.company_by_company_id("company-a") is not None


async def test_node_sdk_with_a_wrong_key_reports_401(start_sidecar: SidecarFactory, node_sdk: Path) -> None:
    sidecar = await with_key(start_sidecar)
    status, responses, stderr = await run_node(node_sdk, url(sidecar), "wrong-key", "b")
    assert status == 1
    assert [response["status"] for response in responses] == [401], "401 is not retried"
    assert "[401] Unauthorized" in stderr


# plain HTTP ----------------------------------------------------------------------------------------------------


async def post(sidecar: Sidecar, path: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=url(sidecar), timeout=DEADLINE) as client:
        return await client.post(path, content=content, headers={k.replace("_", "-"): v for k, v in headers.items()})


def track(message_id: str, user_id: str = "h-1", event: str = "Http Order") -> dict[str, Any]:
    return {"type": "track", "messageId": message_id, "userId": user_id, "event": event}


async def test_open_on_loopback_without_keys(sidecar: Sidecar) -> None:
    response = await post(sidecar, "/v1/track", {"userId": "h-1", "event": "Open", "messageId": "open-1"})
    assert response.status_code == 200
    assert response.json()["success"] is True


async def test_a_message_id_taken_over_grpc_is_a_duplicate_over_http_and_back(sidecar: Sidecar) -> None:
    grpc_event = event_pb2.Event(message_id="dup-1", user_id="h-1", track=event_pb2.Track(event="Both"))
    sent = await sidecar.stub.Send(service_pb2.SendRequest(events=[grpc_event]), timeout=DEADLINE)
    assert sent.acks[0].status == event_pb2.Ack.STATUS_ACCEPTED
    response = await post(sidecar, "/v1/batch", {"batch": [track("dup-1"), track("dup-2")]})
    assert response.status_code == 200
    assert [(ack["messageId"], ack["status"]) for ack in response.json()["acks"]] == [
        ("dup-1", "duplicate"),
        ("dup-2", "accepted"),
    ]
    grpc_event.message_id = "dup-2"
    again = await sidecar.stub.Send(service_pb2.SendRequest(events=[grpc_event]), timeout=DEADLINE)
    assert again.acks[0].status == event_pb2.Ack.STATUS_DUPLICATE


async def test_bad_requests_are_answered_and_the_api_keeps_serving(sidecar: Sidecar) -> None:
    bad_json = await post(sidecar, "/v1/batch", b'{"batch": [}')
    assert bad_json.status_code == 400
    assert bad_json.json()["message"].startswith("invalid JSON: Expecting value")
    invalid = await post(sidecar, "/v1/track", {"userId": "h-1", "event": ""})
    assert (invalid.status_code, invalid.json()["message"]) == (400, "track.event: must not be empty")
    bomb = gzip.compress(b" " * (4 * 1024 * 1024))
    inflated = await post(sidecar, "/v1/batch", bomb, content_encoding="gzip")
    assert (inflated.status_code, inflated.json()["message"]) == (
        400,
        "the body is over 512000 bytes (500 KB) after decompression",
    )
    events = [{**track(f"big-{n}"), "properties": {"blob": "x" * 30_000}} for n in range(20)]  # 600 KB
    too_large = await post(sidecar, "/v1/batch", {"batch": events})
    assert too_large.status_code == 413
    assert too_large.json()["code"] == "request_too_large"
    fine = await post(sidecar, "/v1/import/", {"batch": [track("after-1")]})
    assert (fine.status_code, fine.json()["acks"][0]["status"]) == (200, "accepted")


async def test_a_full_spool_is_429_with_retry_after_and_the_retry_is_taken(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom, tmp_path: Path
) -> None:
    sidecar = await start_sidecar(
        queue=QueueConfig(max_events=2, workers=1, full_retry_after_seconds=2.5),
        spool=SpoolConfig(kind="sqlite", directory=tmp_path / "spool", max_events=2),
    )
    fake_intercom.faults.error_rate = 1.0  # every delivery fails for now, so what is spooled stays there
    first = await post(sidecar, "/v1/track", track("full-0", user_id="user-0"))
    assert first.status_code == 200
    batch = {"batch": [track(f"full-{n}", user_id=f"user-{n}") for n in (1, 2)]}
    response = await post(sidecar, "/v1/batch", batch)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    body = response.json()
    assert (body["success"], body["code"]) == (False, "retry_later")
    assert [ack["status"] for ack in body["acks"]] == ["accepted", "retry_later"]
    assert body["acks"][1]["reason"].startswith("the spool is full (2 of 2 events, ")
    fake_intercom.faults.clear()
    await delivered(sidecar)
    again = await post(sidecar, "/v1/batch", batch)  # what an SDK does after Retry-After: the whole request
    assert again.status_code == 200
    assert [ack["status"] for ack in again.json()["acks"]] == ["duplicate", "accepted"]


async def test_traceparent_header_continues_the_callers_trace(sidecar: Sidecar) -> None:
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await post(sidecar, "/v1/track", track("traced-1"), traceparent=f"00-{caller_trace}-00f067aa0ba902b7-01")
    assert response.json()["acks"][0]["traceId"] == caller_trace
    await delivered(sidecar)
    (span,) = [span for span in sidecar.spans.get_finished_spans() if span.name == "intercom_sidecar.event"]
    assert format(span.context.trace_id, "032x") == caller_trace


async def test_after_stop_the_api_no_longer_listens(sidecar: Sidecar) -> None:
    await sidecar.app.stop()
    with pytest.raises(httpx.ConnectError):
        await post(sidecar, "/v1/track", track("late-1"))


async def test_write_keys_never_show_in_logs_spans_or_answers(
    start_sidecar: SidecarFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sidecar = await with_key(start_sidecar)
    auth = httpx.BasicAuth(WRITE_KEY, "")
    answers = []
    async with httpx.AsyncClient(base_url=url(sidecar), timeout=DEADLINE) as client:
        for path, body, credentials in [
            ("/v1/track", track("key-1"), auth),
            ("/v1/track", {"userId": "u", "event": ""}, auth),
            ("/v1/track", track("key-2"), httpx.BasicAuth(WRITE_KEY + "-wrong", "")),
            ("/v1/batch", {"batch": [track("key-3")], "writeKey": "whatever"}, None),
        ]:
            response = await client.post(path, json=body, auth=credentials)
            answers.append(f"{response.status_code} {response.headers} {response.text}")
    assert [answer[:3] for answer in answers] == ["200", "400", "401", "401"]
    await delivered(sidecar)
    await sidecar.app.stop()
    spans = [json.dumps(dict(span.attributes or {})) + str(span.events) for span in sidecar.spans.get_finished_spans()]
    for place, text in [("logs", caplog.text), ("answers", "\n".join(answers)), ("spans", "\n".join(spans))]:
        assert WRITE_KEY not in text, f"the write key is in the {place}"
    assert "Serving the Segment HTTP API on `http://127.0.0.1:" in caplog.text
