"""`intercom-sidecar dlq` with dead letters whose payloads were dropped or encrypted."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest

from intercom_sidecar.__main__ import _parser
from intercom_sidecar.delivery.dead_letter_payloads import DeadLetterKey
from intercom_sidecar.delivery.dead_letters import DeadLetterStore
from tests.conftest import FakeClock
from tests.unit.delivery.test_dead_letters_at_rest import dead_letter_one

RAW_KEY = bytes(range(32))
KEY_TEXT = base64.b64encode(RAW_KEY).decode()


async def dlq(*argv: str) -> int:
    args = _parser().parse_args(["dlq", *argv])
    code: int = await args.run(args)
    return code


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[str, str]:
    """The key the dead letters are encrypted with, and another one."""
    right, wrong = tmp_path / "key", tmp_path / "other-key"
    right.write_text(KEY_TEXT + "\n")
    wrong.write_text(base64.urlsafe_b64encode(bytes(range(1, 33))).decode())
    return str(right), str(wrong)


async def test_list_shows_what_each_dead_letter_kept(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await dead_letter_one(tmp_path, clock, "drop", "ada@example.com")

    assert await dlq("--spool-dir", str(tmp_path), "list", "--json", "--type", "track") == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {key: row[key] for key in ("message_id", "type", "user", "attempts", "reason", "payload")} == {
        "message_id": "m1",
        "type": "track",
        "user": "u1",
        "attempts": 2,
        "reason": "intercom 400: bad",
        "payload": "dropped",
    }
    assert row["trace_id"] == "0" * 32


async def test_show_and_replay_of_a_payload_free_dead_letter(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await dead_letter_one(tmp_path, clock, "drop", "ada@example.com")

    assert await dlq("--spool-dir", str(tmp_path), "show", "m1") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["event"], shown["payload"], shown["type"]) == (None, "dropped", "track")

    assert await dlq("--spool-dir", str(tmp_path), "replay", "--user", "u1") == 1
    out = capsys.readouterr().out
    assert out.startswith("replayed 0 of 0 dead letters")
    assert "not replayable: 1 dead letters kept no payload (INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS=drop" in out
    assert "m1" in out
    with DeadLetterStore(tmp_path) as store:
        assert len(store.find()) == 1, "it stays listed, for the operator to purge"


async def test_an_encrypted_dead_letter_needs_its_key(
    tmp_path: Path, clock: FakeClock, key_files: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    entry = await dead_letter_one(tmp_path, clock, "encrypt", "ada@example.com")
    right, wrong = key_files
    spool_dir = str(tmp_path)

    assert await dlq("--spool-dir", spool_dir, "show", "m1") == 2
    assert "is encrypted: set INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE" in capsys.readouterr().err
    assert await dlq("--spool-dir", spool_dir, "--key-file", wrong, "show", "m1") == 2
    err = capsys.readouterr().err
    assert f"encrypted with another key (key id {DeadLetterKey(RAW_KEY).id.hex()}" in err
    assert KEY_TEXT not in err

    assert await dlq("--spool-dir", spool_dir, "--key-file", right, "show", "m1") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["event"]["track"]["properties"] == {"email": "ada@example.com"}

    assert await dlq("--spool-dir", spool_dir, "--key-file", wrong, "replay", "--message-id", "m1") == 2
    assert "another key" in capsys.readouterr().err
    assert await dlq("--spool-dir", spool_dir, "--key-file", right, "replay", "--message-id", "m1") == 0
    assert capsys.readouterr().out.startswith("replayed 1 of 1 dead letters")
    with DeadLetterStore(tmp_path) as store:
        assert store.find() == []
    assert _pending_payloads(tmp_path) == [entry.payload], "pending again, in clear, for the sidecar to send"


async def test_a_bad_key_file_is_a_clear_error_that_does_not_quote_it(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    await dead_letter_one(tmp_path, clock, "encrypt", "x")
    short = tmp_path / "short-key"
    short.write_text("c2hvcnQtc2VjcmV0LWtleQ==")

    assert await dlq("--spool-dir", str(tmp_path), "--key-file", str(short), "show", "m1") == 2
    err = capsys.readouterr().err
    assert "INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE: must hold 32 random bytes in base64" in err
    assert "c2hvcnQ" not in err


def _pending_payloads(directory: Path) -> list[bytes]:
    conn = sqlite3.connect(directory / "spool.db")
    try:
        return [row[0] for row in conn.execute("SELECT payload FROM pending ORDER BY seq")]
    finally:
        conn.close()
