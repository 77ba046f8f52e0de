"""Dead letters encrypted or payload-free at rest, replayed with `dlq` into a running sidecar."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.config import Secret, SpoolConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar, SidecarFactory
from tests.e2e.test_durability import Ack, dlq, send, track

pytestmark = pytest.mark.e2e


async def dead_letters(sidecar: Sidecar, count: int) -> None:
    """The REJECTED ack does not wait for the dead letter's commit: wait until the spool lists them."""
    assert sidecar.app.spool is not None
    for _ in range(500):
        if len(await sidecar.app.spool.list_dead_letters()) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} dead letters")


async def delivered(fake_intercom: FakeIntercom, count: int) -> None:
    for _ in range(600):  # the running sidecar polls for replays every 2 s
        if len(fake_intercom.state.events) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} events delivered")


async def dead_letter_one_event(
    start: SidecarFactory, fake_intercom: FakeIntercom, spool: SpoolConfig
) -> tuple[Sidecar, event_pb2.Ack]:
    """Start a sidecar on `spool` and send it event `m1`, which Intercom refuses for good: one dead letter."""
    sidecar = await start(spool=spool)
    fake_intercom.faults.script("POST", "/events", status=400, message="Try again")
    [ack] = await send(sidecar, track("m1", n=1), delivered=True)
    assert ack.status == Ack.STATUS_REJECTED
    await dead_letters(sidecar, 1)
    return sidecar, ack


async def test_encrypted_dead_letters_are_replayed_into_the_running_sidecar_with_the_key(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_text = base64.b64encode(os.urandom(32)).decode()
    key_file = tmp_path / "dead-letter-key"
    key_file.write_text(key_text)
    spool = SpoolConfig(directory=tmp_path / "spool", dead_letter_payloads="encrypt", dead_letter_key=Secret(key_text))
    await dead_letter_one_event(start_sidecar, fake_intercom, spool)

    assert await dlq("--spool-dir", str(spool.directory), "replay", "--message-id", "m1") == 2
    assert "is encrypted" in capsys.readouterr().err
    replay = ("--spool-dir", str(spool.directory), "--key-file", str(key_file), "replay", "--message-id", "m1")
    assert await dlq(*replay) == 0
    assert capsys.readouterr().out.startswith("replayed 1 of 1 dead letters")
    await delivered(fake_intercom, 1)
    assert [(event.event_name, event.metadata["n"]) for event in fake_intercom.state.events] == [("Paid", 1)]


async def test_payload_free_dead_letters_are_reported_not_replayable(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = SpoolConfig(directory=tmp_path / "spool", dead_letter_payloads="drop")
    sidecar, ack = await dead_letter_one_event(start_sidecar, fake_intercom, spool)

    assert await dlq("--spool-dir", str(spool.directory), "replay", "--message-id", "m1") == 1
    out = capsys.readouterr().out
    assert "replayed 0 of 0" in out and "not replayable: 1 dead letters kept no payload" in out
    assert sidecar.app.spool is not None
    [letter] = await sidecar.app.spool.list_dead_letters()
    assert (letter.message_id, letter.call_type, letter.user_key, letter.trace_id) == (
        "m1",
        "track",
        "u1",
        ack.trace_id,
    )
    assert fake_intercom.state.events == []
