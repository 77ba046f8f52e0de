"""The event view in a real browser: Debian's headless Chromium, driven by Playwright (never a downloaded browser).

The page shows events with their statuses and trace ids; an event the fake Intercom refuses for good appears among
the dead letters; once the fault is gone, clicking Replay delivers it and the page shows that. Skipped when
Chromium is not installed, except where `INTERCOM_SIDECAR_REQUIRE_BROWSER=1` (CI), where that fails instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, async_playwright, expect

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import ServerConfig
from intercom_sidecar.fake import FakeIntercom
from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.e2e.conftest import SidecarFactory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ADMIN = ServerConfig(listen="127.0.0.1:0", admin_listen="127.0.0.1:0", shutdown_grace_seconds=1.0)


def _require_chromium() -> None:
    if chromium_path() is not None:
        return
    reason = "Chromium is not installed (apt-get install chromium)"
    if os.environ.get("INTERCOM_SIDECAR_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and INTERCOM_SIDECAR_REQUIRE_BROWSER=1 requires it")
    pytest.skip(reason)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    _require_chromium()
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data-dir
            executable_path=chromium_path(),
            headless=True,
            args=list(CHROMIUM_ARGS),
        )
        try:
            yield context
        finally:
            await context.close()


async def test_the_page_shows_events_and_replays_a_dead_letter(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom, browser: BrowserContext
) -> None:
    sidecar = await start_sidecar(server=ADMIN)
    page = await browser.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "request", lambda request: None if request.url.startswith("http://127.0.0.1:") else problems.append(request.url)
    )
    await page.goto(f"http://127.0.0.1:{sidecar.app.admin_port}/")
    await expect(page.locator("#connection")).to_have_text("live")

    fake_intercom.faults.script("POST", "/events", status=422, code="parameter_invalid", message="bad", times=100)
    events = [
        event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify()),
        event_pb2.Event(message_id="m2", user_id="u1", track=event_pb2.Track(event="Refused")),
        event_pb2.Event(message_id="m3", user_id="u1", page=event_pb2.Page(name="Home")),
    ]
    response = await sidecar.stub.Send(service_pb2.SendRequest(events=events), timeout=30)
    acks = {ack.message_id: ack for ack in response.acks}
    await sidecar.app.pipeline.wait_idle()

    # Events, with what the caller was told, how delivery ended, and the caller's trace id.
    for message_id, ack_status, outcome in (("m1", "accepted", "delivered"), ("m2", "accepted", "rejected"),
                                            ("m3", "filtered", "-")):  # fmt: skip
        row = page.locator(f"#events tr.event[data-message-id='{message_id}']")
        await expect(row.locator("td.ack .badge")).to_have_text(ack_status)
        await expect(row.locator("td.outcome .badge")).to_have_text(outcome)
        await expect(row.locator("td.trace")).to_have_text(acks[message_id].trace_id)
    refused = page.locator("#events tr.event[data-message-id='m2']")
    await expect(refused.locator("td.outcome .badge")).to_have_class("badge status-rejected")

    # Its Intercom request, one click away.
    await refused.click()
    detail = page.locator("#events tr.detail")
    await expect(detail.locator("table.requests tbody tr")).to_have_count(1)
    await expect(detail.locator("table.requests tbody tr")).to_contain_text("/events")
    await expect(detail.locator("table.requests tbody tr")).to_contain_text("422")

    # The dead letter, and its Replay button once the fault is gone.
    letter = page.locator("#dead-letters tbody tr[data-message-id='m2']")
    await expect(letter).to_contain_text("parameter_invalid")
    await expect(letter.locator("td.trace")).to_have_text(acks["m2"].trace_id)
    fake_intercom.faults.clear()
    await letter.locator("button[data-action='replay']").click()
    await expect(page.locator("#replay-message")).to_have_text("Replayed 1 dead letter.")
    await expect(page.locator("#dead-letters tbody tr")).to_have_count(0)
    await expect(page.locator("#dlq-empty")).to_be_visible()
    replayed = page.locator("#events tr.event[data-message-id='m2']").filter(has=page.locator(".source"))
    await expect(replayed.locator(".source")).to_have_text("replayed")
    await expect(replayed.locator("td.outcome .badge")).to_have_text("delivered")
    await expect(replayed.locator("td.trace")).to_have_text(acks["m2"].trace_id)
    await expect(page.locator("#count-delivered")).to_have_text("2")

    assert problems == [], "no script errors, no blocked resources, no request beyond the sidecar"
