"""Take `docs/event-view.png`: the live event view of a sidecar delivering a few events to the fake Intercom.

Run by hand (not part of the tests) after changing the page:

    python3 -m uv run --frozen python scripts/screenshot_event_view.py [OUTPUT.png]

Everything runs on 127.0.0.1 with ephemeral ports: the fake Intercom, the sidecar (gRPC and the event view), and
Debian's headless Chromium (`apt-get install chromium`), driven by Playwright without downloading a browser. One
track event is refused by the fake (a scripted 422), so the page shows a dead letter next to delivered events.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import grpc
from google.protobuf import struct_pb2
from playwright.async_api import async_playwright

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.app import App
from intercom_sidecar.config import Config, IntercomConfig, RetryConfig, Secret, ServerConfig, SpoolConfig
from intercom_sidecar.fake import FakeIntercom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the browser settings live with the browser test: tests/browser.py
from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402


def _traits(**values: object) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def _events() -> list[event_pb2.Event]:
    return [
        event_pb2.Event(
            message_id="msg-1001", user_id="user-42", identify=event_pb2.Identify(traits=_traits(plan="pro"))
        ),
        event_pb2.Event(message_id="msg-1002", user_id="user-42", track=event_pb2.Track(event="Order Completed")),
        event_pb2.Event(message_id="msg-1003", user_id="user-7", identify=event_pb2.Identify()),
        event_pb2.Event(message_id="msg-1004", user_id="user-7", page=event_pb2.Page(name="Pricing")),
        event_pb2.Event(message_id="msg-1005", user_id="user-7", track=event_pb2.Track(event="Trial Started")),
        event_pb2.Event(message_id="msg-1006", track=event_pb2.Track(event="No user")),
    ]


async def main(output: Path) -> None:
    fake = FakeIntercom()
    await fake.start("127.0.0.1", 0)
    with tempfile.TemporaryDirectory() as scratch:
        config = Config(
            intercom=IntercomConfig(token=Secret(fake.token), base_url=fake.url),
            server=ServerConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", shutdown_grace_seconds=2.0),
            retry=RetryConfig(initial_backoff_seconds=0.01, max_backoff_seconds=0.05, max_elapsed_seconds=2.0),
            spool=SpoolConfig(kind="sqlite", directory=Path(scratch) / "spool"),
        )
        app = App(config)
        await app.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                stub = service_pb2_grpc.EventServiceStub(channel)
                # The first track of user-7 is refused for good: a dead letter to replay.
                fake.faults.script("POST", "/events", status=422, code="parameter_invalid", message="bad metadata")
                events = _events()
                await stub.Send(service_pb2.SendRequest(events=events[2:5]), timeout=30)
                await app.pipeline.wait_idle()
                await stub.Send(service_pb2.SendRequest(events=[*events[:2], events[5]]), timeout=30)
                await app.pipeline.wait_idle()
            await _screenshot(f"http://127.0.0.1:{app.admin_port}/", output, Path(scratch) / "chromium")
        finally:
            await app.stop()
            await fake.stop()


async def _screenshot(url: str, output: Path, profile: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_path(),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.wait_for_selector("#dead-letters tbody tr")
            await page.locator("tr.event[data-message-id='msg-1005']").click()  # show its Intercom requests
            await page.locator("tr.event[data-message-id='msg-1002']").click()
            await page.wait_for_selector("tr.detail")
            output.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(output), full_page=True)
        finally:
            await browser.close()
    print(f"wrote {output}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "event-view.png"))
