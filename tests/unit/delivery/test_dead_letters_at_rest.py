"""Dead letters at rest: kept, dropped or encrypted payloads (INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS), the spool's
file modes, and the migration of a schema-1 database."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest
from google.protobuf import struct_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.delivery.dead_letter_payloads import (
    KEEP,
    DeadLetterKey,
    DeadLetterPayloadError,
    DeadLetterPayloads,
)
from intercom_sidecar.delivery.dead_letters import DeadLetterStore
from intercom_sidecar.delivery.spool import DATABASE_NAME, SCHEMA_VERSION, SpoolEntry
from intercom_sidecar.delivery.spool_files import SCHEMA
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.model.call_type import call_type_of
from tests.conftest import FakeClock

pytestmark = pytest.mark.timeout(10)

KEY = DeadLetterKey(bytes(range(32)))
OTHER_KEY = DeadLetterKey(bytes(range(1, 33)))


def event_entry(message_id: str, marker: str) -> SpoolEntry:
    """A real track event whose properties hold `marker`, a string that must not be found on disk."""
    properties = struct_pb2.Struct()
    properties.update({"email": marker})
    payload = event_pb2.Event(
        message_id=message_id, user_id="u1", track=event_pb2.Track(event="Paid", properties=properties)
    ).SerializeToString()
    return SpoolEntry(message_id, "u1", payload, "0" * 32, 1_700_000_000.0)


def payloads(mode: str, key: DeadLetterKey | None = None) -> DeadLetterPayloads:
    return DeadLetterPayloads(mode, key, describe=call_type_of)


async def dead_letter_one(directory: Path, clock: FakeClock, mode: str, marker: str) -> SpoolEntry:
    """Spool one event and make it a dead letter under `mode`; the spool is closed after."""
    spool = SqliteSpool(directory, max_events=10, max_bytes=100_000, clock=clock.now, payloads=payloads(mode, KEY))
    await spool.open()
    entry = event_entry("m1", marker)
    assert await spool.append([entry]) == [1]
    spool.dead_letter(1, reason="intercom 400: bad", status=400, code="invalid", attempts=2)
    await spool.close()
    return entry


def disk_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file())


# The payload policy on its own


def test_an_encrypted_payload_opens_with_its_key_only() -> None:
    sealed_form, sealed = payloads("encrypt", KEY).seal("m1", b"the event")

    assert sealed_form == "aes256gcm" and b"the event" not in sealed
    assert payloads("keep", KEY).open("m1", sealed_form, sealed) == b"the event"  # the mode may have changed since
    with pytest.raises(DeadLetterPayloadError, match=f"another key \\(key id {KEY.id.hex()}; .* {OTHER_KEY.id.hex()}"):
        payloads("keep", OTHER_KEY).open("m1", sealed_form, sealed)
    with pytest.raises(DeadLetterPayloadError, match="is encrypted: set INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE"):
        KEEP.open("m1", sealed_form, sealed)


def test_an_encrypted_payload_is_bound_to_its_message_id() -> None:
    _, sealed = payloads("encrypt", KEY).seal("m1", b"the event")

    with pytest.raises(DeadLetterPayloadError, match="`m2` is damaged"):
        payloads("encrypt", KEY).open("m2", "aes256gcm", sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DeadLetterPayloadError, match="`m1` is damaged"):
        payloads("encrypt", KEY).open("m1", "aes256gcm", tampered)


def test_a_dropped_payload_cannot_be_opened_and_says_why() -> None:
    form, stored = payloads("drop").seal("m1", b"the event")

    assert (form, stored) == ("dropped", b"")
    with pytest.raises(DeadLetterPayloadError, match=r"kept no payload .*=drop"):
        KEEP.open("m1", form, stored)


def test_the_key_never_shows_itself() -> None:
    raw = os.urandom(32)
    key = DeadLetterKey.from_base64(base64.b64encode(raw).decode())
    shown = repr(key) + str(key) + repr(payloads("encrypt", key))
    assert raw.hex() not in shown and base64.b64encode(raw).decode() not in shown
    assert key.id.hex() in shown


def test_encrypting_needs_a_key() -> None:
    with pytest.raises(ValueError, match="needs a key"):
        DeadLetterPayloads("encrypt")


# In the SQLite spool


@pytest.mark.parametrize("mode", ["drop", "encrypt"])
async def test_the_payload_is_not_on_disk(tmp_path: Path, clock: FakeClock, mode: str) -> None:
    marker = f"ada-{uuid.uuid4().hex}@example.com"
    await dead_letter_one(tmp_path, clock, mode, marker)

    assert marker.encode() not in disk_bytes(tmp_path), "not in the dead letter, nor left behind by the pending row"
    with DeadLetterStore(tmp_path) as store:
        [letter] = store.find()
    assert (letter.message_id, letter.user_key, letter.call_type, letter.attempts, letter.reason) == (
        "m1",
        "u1",
        "track",
        2,
        "intercom 400: bad",
    )
    assert letter.payload_form == {"drop": "dropped", "encrypt": "aes256gcm"}[mode]
    assert letter.replayable is (mode == "encrypt")


async def test_a_kept_payload_is_on_disk_as_accepted(tmp_path: Path, clock: FakeClock) -> None:
    """The control for the test above: the marker is found when the payload is kept, so that test can fail."""
    marker = f"ada-{uuid.uuid4().hex}@example.com"
    entry = await dead_letter_one(tmp_path, clock, "keep", marker)

    assert marker.encode() in disk_bytes(tmp_path)
    with DeadLetterStore(tmp_path) as store:
        [letter] = store.find()
        assert (letter.payload_form, letter.call_type, store.payload_of(letter)) == ("kept", "track", entry.payload)


async def test_an_encrypted_dead_letter_is_replayed_in_clear_with_its_key(tmp_path: Path, clock: FakeClock) -> None:
    entry = await dead_letter_one(tmp_path, clock, "encrypt", "x")

    with DeadLetterStore(tmp_path) as store, pytest.raises(DeadLetterPayloadError, match="is encrypted"):
        store.replay([1])
    with (
        DeadLetterStore(tmp_path, payloads("keep", OTHER_KEY)) as store,
        pytest.raises(DeadLetterPayloadError, match="another key"),
    ):
        store.replay([1])
    with DeadLetterStore(tmp_path, payloads("keep", KEY)) as store:
        assert len(store.find()) == 1, "a failed replay moved nothing"
        [replayed] = store.replay([1])
        assert replayed.payload == entry.payload
        assert store.find() == []


async def test_a_payload_free_dead_letter_stays_put_on_replay(tmp_path: Path, clock: FakeClock) -> None:
    await dead_letter_one(tmp_path, clock, "drop", "x")

    with DeadLetterStore(tmp_path) as store:
        assert store.replay([1]) == []
        [letter] = store.find()
        with pytest.raises(DeadLetterPayloadError, match="kept no payload"):
            store.payload_of(letter)


async def test_the_running_spool_replays_what_it_can_open(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def spool(mode: str, key: DeadLetterKey | None = None) -> SqliteSpool:
        return SqliteSpool(tmp_path, max_events=10, max_bytes=100_000, clock=clock.now, payloads=payloads(mode, key))

    first = spool("drop")
    await first.open()
    await first.append([event_entry("m1", "x"), event_entry("m2", "y")])
    first.dead_letter(1, reason="r", status=400, code="c", attempts=1)
    await first.close()
    second = spool("encrypt", OTHER_KEY)  # restarted with another mode and key
    await second.open()
    second.dead_letter(2, reason="r", status=400, code="c", attempts=1)
    await second.close()

    third = spool("encrypt", KEY)  # and again, with yet another key
    await third.open()
    assert await third.replay([1, 2]) == [], "one has no payload, the other another key"
    assert "Not replaying a dead letter: the dead letter `m2` was encrypted with another key" in caplog.text
    assert [letter.message_id for letter in await third.list_dead_letters()] == ["m1", "m2"]
    assert await third.append([event_entry("m3", "z")]) == [3], "the writer's group did not fail"
    await third.close()


# Files and schema


async def test_the_spool_directory_and_its_files_are_private(tmp_path: Path, clock: FakeClock) -> None:
    directory = tmp_path / "state" / "spool"
    spool = SqliteSpool(directory, max_events=10, max_bytes=100_000, clock=clock.now)
    await spool.open()
    await spool.append([event_entry("m1", "x")])
    spool.dead_letter(1, reason="r", status=400, code="c", attempts=1)
    await spool.list_dead_letters()

    names = sorted(path.name for path in directory.iterdir())
    assert names == [DATABASE_NAME, f"{DATABASE_NAME}-shm", f"{DATABASE_NAME}-wal", "spool.lock"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {name: stat.S_IMODE((directory / name).stat().st_mode) for name in names} == dict.fromkeys(names, 0o600)
    await spool.close()


async def test_a_schema_1_database_is_migrated(tmp_path: Path, clock: FakeClock) -> None:
    old_schema = "\n".join(line.split("--")[0].rstrip() for line in SCHEMA.splitlines())
    old_schema = re.sub(r",\s*call_type [^,]*,\s*payload_form [^)]*", "\n", old_schema)
    assert "call_type" not in old_schema and "payload_form" not in old_schema
    conn = sqlite3.connect(tmp_path / DATABASE_NAME)
    conn.executescript(old_schema + "PRAGMA user_version = 1;")
    payload = event_entry("m1", "x").payload
    conn.execute(
        "INSERT INTO dead_letters VALUES (7, 'm1', 'u1', ?, ?, 1.0, 1, '[]', 2.0, 'old reason', 400, 'c')",
        (payload, "0" * 32),
    )
    conn.commit()
    conn.close()

    spool = SqliteSpool(tmp_path, max_events=10, max_bytes=100_000, clock=clock.now)
    await spool.open()
    await spool.close()

    with DeadLetterStore(tmp_path) as store:
        [letter] = store.find()
        assert (letter.seq, letter.call_type, letter.payload_form, store.payload_of(letter)) == (7, "", "kept", payload)
    conn = sqlite3.connect(tmp_path / DATABASE_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()
