"""The canary test: the access token, the identity secret and the dead-letter key never leave the process.

The real sidecar runs as `intercom-sidecar serve` against a fake Intercom (another process) that accepts only a
canary token. It logs at DEBUG and prints its spans (`OTEL_TRACES_EXPORTER=console`: every attribute, event and
status message). Events are delivered, invalid, rejected by Intercom (4xx), retried on 5xx and connection resets
until their budget runs out, and paused by a 401 or a 403; in one run Intercom quotes the token in every error
message it sends. Then SIGTERM. No canary may appear in standard output (spans), standard error (logs), any ack or
RPC answer, or the bytes of any file in the spool directory (database, WAL, dead letters), read both while the
sidecar runs and after it stopped.

Without a process: `repr()` and `str()` of the loaded `Config` and each of its sections, and the message of every
configuration error about a secret (a token file with a second line, say), hold no canary either.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.config import Config, load_config, read_token_file
from intercom_sidecar.delivery.dead_letters import DeadLetterStore
from intercom_sidecar.delivery.spooler import dead_letter_payloads
from intercom_sidecar.errors import ConfigError

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "intercom_sidecar"]
DELIVERED = [("x-ack-mode", "delivered")]
Ack = event_pb2.Ack
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Lines:
    """Everything a process writes to one pipe, read by a thread (so the pipe never fills up)."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        pipe.close()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """The first match of `pattern` in a log message (JSON lines, or plain lines as a fallback)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if found := re.search(pattern, _message(line)):
                        return found
                if not self._changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise AssertionError(f"never logged: {pattern!r}; got:\n{''.join(self.lines)}")

    def join(self) -> None:
        self._thread.join(timeout=5)


def _message(line: str) -> str:
    try:
        parsed = json.loads(line)
    except ValueError:
        return line
    return str(parsed.get("message", line)) if isinstance(parsed, dict) else line


@pytest.fixture
def canaries() -> tuple[str, str]:
    """Fresh each run, so nothing but this run could have written them anywhere."""
    return f"tok_canary_{uuid.uuid4().hex}", f"idsecret_canary_{uuid.uuid4().hex}"


@pytest.fixture
def key_canary() -> bytes:
    """A fresh dead-letter key (32 bytes); its base64 text is the canary, and so are the bytes themselves."""
    return os.urandom(32)


@pytest.fixture
def fake_url(canaries: tuple[str, str]) -> Iterator[str]:
    """A fake Intercom in its own process, accepting only the canary token."""
    process = subprocess.Popen(
        [*COMMAND, "fake-intercom", "--port", "0", "--token", canaries[0]],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", process.stdout.readline())
    assert found, "the fake Intercom did not say where it listens"
    try:
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def sidecar_env(
    tmp_path: Path, fake_url: str, canaries: tuple[str, str], dead_letter_key: bytes | None = None
) -> dict[str, str]:
    token_file = tmp_path / "access-token"
    token_file.write_text(canaries[0] + "\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("INTERCOM_", "OTEL_"))}
    if dead_letter_key is not None:
        key_file = tmp_path / "dead-letter-key"
        key_file.write_text(base64.b64encode(dead_letter_key).decode() + "\n")
        env["INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS"] = "encrypt"
        env["INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE"] = str(key_file)
    return {
        **env,
        "PYTHONUNBUFFERED": "1",
        "INTERCOM_API_URL": fake_url,
        "INTERCOM_ACCESS_TOKEN_FILE": str(token_file),
        "INTERCOM_IDENTITY_SECRET": canaries[1],
        "INTERCOM_SIDECAR_LOG_LEVEL": "DEBUG",
        "INTERCOM_SIDECAR_SPOOL": "sqlite",
        "INTERCOM_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),
        "INTERCOM_SIDECAR_SEGMENT_LISTEN": "127.0.0.1:0",
        "INTERCOM_SIDECAR_ADMIN_LISTEN": "127.0.0.1:0",
        "INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS": "3",
        "INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS": "0.02",
        "INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS": "0.1",
        "INTERCOM_SIDECAR_RETRY_MAX_ELAPSED_SECONDS": "0.5",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # print spans as they end, not only at exit
    }


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def identify(message_id: str, user_id: str, user_hash: str | None = None, **traits: Any) -> event_pb2.Event:
    integrations = struct({"Intercom": {"user_hash": user_hash}}) if user_hash is not None else None
    return event_pb2.Event(
        message_id=message_id,
        user_id=user_id,
        integrations=integrations,
        identify=event_pb2.Identify(traits=struct(traits)),
    )


def track(message_id: str, user_id: str, name: str = "Order Completed", **properties: Any) -> event_pb2.Event:
    return event_pb2.Event(
        message_id=message_id, user_id=user_id, track=event_pb2.Track(event=name, properties=struct(properties))
    )


@pytest.mark.parametrize(
    ("echo", "pause_status"),
    [
        pytest.param(False, 401, id="intercom-is-discreet-401-encrypted-dead-letters"),
        pytest.param(True, 403, id="intercom-echoes-the-token-403-kept-dead-letters"),
    ],
)
def test_no_secret_in_logs_spans_spool_or_acks(
    tmp_path: Path, fake_url: str, canaries: tuple[str, str], key_canary: bytes, echo: bool, pause_status: int
) -> None:
    """With `echo`, each of Intercom's error answers quotes the token (as a gateway in the way might): the sidecar
    must not pass it on either. Without, dead letters are encrypted, and the key is a canary too."""
    encrypted = not echo
    process = subprocess.Popen(
        [*COMMAND, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=sidecar_env(tmp_path, fake_url, canaries, key_canary if encrypted else None),
    )
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = Lines(process.stdout), Lines(process.stderr)
    answers: list[str] = []  # every ack and RPC answer, as text
    spool_while_running: dict[str, bytes] = {}
    try:
        target = stderr.wait_for(r"Listening for gRPC on `(127\.0\.0\.1:\d+)`").group(1)
        with grpc.insecure_channel(target) as channel, httpx.Client(base_url=fake_url, timeout=5) as fake:
            stub = service_pb2_grpc.EventServiceStub(channel)

            def send(*events: event_pb2.Event, metadata: Any = DELIVERED) -> list[event_pb2.Ack]:
                reply = stub.Send(service_pb2.SendRequest(events=events), metadata=metadata, timeout=10)
                answers.extend(map(str, reply.acks))
                return list(reply.acks)

            def fault(**scripted: Any) -> None:
                if echo:  # every error message Intercom sends quotes the token
                    scripted["message"] = f"{scripted.get('message') or 'Error'}; you sent Bearer {canaries[0]}"
                fake.post("/_fake/faults", json={"scripted": [scripted]}).raise_for_status()

            fault(method="POST", path_prefix="/events", status=400, message=f"Bad token {canaries[0]}")
            [echoed] = send(track("m-echo", "u0"))
            assert echoed.status == Ack.STATUS_REJECTED
            _exercise(send, fault, channel, canaries[1], answers, pause_status)
            spool_while_running = _files(tmp_path / "spool")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stdout.join()
        stderr.join()

    assert '"name": "intercom_sidecar' in stdout.text, "the spans were printed (else this test scans nothing)"
    assert any(_message(line) != line for line in stderr.lines), "the logs are JSON lines"
    assert '"level": "DEBUG"' in stderr.text
    places = {
        "standard output (spans)": stdout.text.encode(),
        "standard error (logs)": stderr.text.encode(),
        "acks and answers": "\n".join(answers).encode(),
    }
    places.update({f"spool file {name} while running": data for name, data in spool_while_running.items()})
    places.update({f"spool file {name} after the stop": data for name, data in _files(tmp_path / "spool").items()})
    assert {"spool file spool.db while running", "spool file spool.db-wal while running"} <= set(places)
    assert "spool file spool.db after the stop" in places
    assert b"m-echo" in places["spool file spool.db after the stop"], "the dead letters are in what was read"
    with DeadLetterStore(tmp_path / "spool") as store:
        forms = {letter.payload_form for letter in store.find()}
    assert forms == ({"aes256gcm"} if encrypted else {"kept"}), "the dead letters were stored as this run meant"
    secrets = [*canaries]
    if encrypted:
        secrets += [base64.b64encode(key_canary).decode(), key_canary.hex()]
        assert key_canary not in b"".join(places.values())
    leaks = _leaks(places, secrets)
    assert not leaks, "\n".join(leaks)


def _exercise(
    send: Callable[..., list[event_pb2.Ack]],
    fault: Callable[..., None],
    channel: grpc.Channel,
    identity_secret: str,
    answers: list[str],
    pause_status: int,
) -> None:
    """Delivered, invalid, rejected, retried until the budget ran out (5xx, connection resets), paused by a 401 or
    a 403."""
    good_hash = hmac.new(identity_secret.encode(), b"u1", hashlib.sha256).hexdigest()
    acks = send(
        identify("m-identify", "u1", good_hash, email="ada@example.com", plan="pro"),
        track("m-track", "u1", revenue=19.99),
        track("m-empty-name", "u1", name=""),
        event_pb2.Event(message_id="m-no-user", track=event_pb2.Track(event="Order Completed")),
        identify("m-bad-hash", "u2", "0" * 64),
    )
    assert [ack.status for ack in acks] == [
        Ack.STATUS_DELIVERED,
        Ack.STATUS_DELIVERED,
        Ack.STATUS_INVALID,
        Ack.STATUS_INVALID,
        Ack.STATUS_INVALID,
    ], f"the canary token works (events were delivered), and bad events are refused: {answers}"
    assert "user_hash" in acks[4].reason

    reply = service_pb2_grpc.EventServiceStub(channel).UserHash(service_pb2.UserHashRequest(user_id="u1"), timeout=10)
    answers.append(str(reply))
    assert reply.user_hash == good_hash

    fault(method="POST", path_prefix="/contacts", status=422, message="Email is invalid")
    fault(method="POST", path_prefix="/events", status=503, times=1000)
    fault(method="POST", path_prefix="/companies", status=0, times=1000)  # connection resets
    [rejected, exhausted, reset] = send(
        identify("m-422", "u3", email="not-an-email"),
        track("m-503", "u1"),
        event_pb2.Event(message_id="m-reset", user_id="u1", group=event_pb2.Group(group_id="g1")),
    )
    assert (rejected.status, exhausted.status, reset.status) == (Ack.STATUS_REJECTED,) * 3, answers
    assert "422" in rejected.reason and "503" in exhausted.reason

    fault(method="*", path_prefix="/", status=pause_status, times=1)
    [accepted] = send(identify("m-unauthorized", "u4", email="bob@example.com"), metadata=())
    assert accepted.status == Ack.STATUS_ACCEPTED
    _until_not_serving(channel)
    [later] = send(track("m-paused", "u4"), metadata=())
    assert later.status == Ack.STATUS_RETRY_LATER and str(pause_status) in later.reason


def _until_not_serving(channel: grpc.Channel) -> None:
    """Readiness turns NOT_SERVING once the 401 paused delivery."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 5
    while health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status != NOT_SERVING:
        assert time.monotonic() < deadline, "delivery never paused"
        time.sleep(0.02)


def _files(directory: Path) -> dict[str, bytes]:
    """The bytes of every file under `directory`, by name."""
    return {path.name: path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def _leaks(places: dict[str, bytes], canaries: list[str]) -> list[str]:
    """Where each canary shows up, with what surrounds its first occurrence."""
    found = []
    names = ("access token", "identity secret", "dead-letter key (base64)", "dead-letter key (hex)", "short key")
    for name, canary in zip(names[: len(canaries)], canaries, strict=True):
        for place, data in places.items():
            if (at := data.find(canary.encode())) >= 0:
                found.append(f"{name} in {place}: ...{data[max(0, at - 200) : at + len(canary) + 60]!r}")
    return found


def _config_env(tmp_path: Path, token: str, identity_secret: str, key: bytes) -> dict[str, str]:
    files = {"access-token": token, "identity-secret": identity_secret, "key": base64.b64encode(key).decode()}
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    return {
        "INTERCOM_ACCESS_TOKEN_FILE": str(tmp_path / "access-token"),
        "INTERCOM_IDENTITY_SECRET_FILE": str(tmp_path / "identity-secret"),
        "INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS": "encrypt",
        "INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE": str(tmp_path / "key"),
        "INTERCOM_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),
    }


def test_no_secret_in_the_repr_or_str_of_the_config(
    tmp_path: Path, canaries: tuple[str, str], key_canary: bytes
) -> None:
    config = load_config(_config_env(tmp_path, *canaries, key_canary))
    assert config.intercom.token.reveal() == canaries[0], "the canaries were loaded (else this test checks nothing)"
    shown = {"Config": f"{config!r} {config}"}
    for section in dataclasses.fields(Config):
        value = getattr(config, section.name)
        shown[section.name] = f"{value!r} {value}"
        for inner in dataclasses.fields(value):
            shown[f"{section.name}.{inner.name}"] = f"{getattr(value, inner.name)!r} {getattr(value, inner.name)}"
    payloads = dead_letter_payloads(config)
    shown["dead-letter payloads"] = f"{payloads!r} {payloads}"
    secrets = [*canaries, base64.b64encode(key_canary).decode(), key_canary.hex()]
    leaks = _leaks({name: text.encode() for name, text in shown.items()}, secrets)
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize(
    ("setting", "content"),
    [
        pytest.param("INTERCOM_ACCESS_TOKEN_FILE", "{token}\nsecond line", id="token-file-with-a-second-line"),
        pytest.param("INTERCOM_ACCESS_TOKEN_FILE", "{token} trailing words", id="token-file-with-a-space"),
        pytest.param("INTERCOM_ACCESS_TOKEN_FILE", "{token}\u00e9", id="token-file-not-ascii"),
        pytest.param("INTERCOM_ACCESS_TOKEN", "{token}\tx", id="token-variable-with-a-tab"),
        pytest.param("INTERCOM_IDENTITY_SECRET_FILE", "{secret}\n{secret}", id="identity-secret-file-two-lines"),
        pytest.param("INTERCOM_IDENTITY_SECRET", "{secret} x", id="identity-secret-variable-with-a-space"),
        pytest.param("INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE", "{token}", id="dead-letter-key-not-base64"),
        pytest.param("INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE", "{key}\n{key}", id="dead-letter-key-two-lines"),
        pytest.param("INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE", "{short_key}", id="dead-letter-key-too-short"),
    ],
)
def test_no_secret_in_a_configuration_error(
    tmp_path: Path, canaries: tuple[str, str], key_canary: bytes, setting: str, content: str
) -> None:
    token, secret = canaries
    key = base64.b64encode(key_canary).decode()
    short_key = base64.b64encode(key_canary[:16]).decode()
    env = {"INTERCOM_ACCESS_TOKEN": "a-good-token"}
    text = content.format(token=token, secret=secret, key=key, short_key=short_key)
    if setting.endswith("_FILE"):
        (tmp_path / "secret-file").write_text(text)
        env[setting] = str(tmp_path / "secret-file")
    else:
        env[setting] = text

    with pytest.raises(ConfigError) as raised:
        load_config(env)

    assert raised.value.key == setting
    shown = {"message": str(raised.value).encode(), "repr": repr(raised.value).encode()}
    shown["traceback"] = "".join(traceback.format_exception(raised.value)).encode()
    leaks = _leaks(shown, [token, secret, key, key_canary.hex(), short_key])
    assert not leaks, "\n".join(leaks)


def test_no_secret_in_the_error_of_a_rotated_token_file(tmp_path: Path, canaries: tuple[str, str]) -> None:
    rotated = tmp_path / "rotated-token"
    rotated.write_text(f"{canaries[0]}\n{canaries[0]}-second-line\n")
    with pytest.raises(ConfigError) as raised:
        read_token_file(rotated)
    text = "".join(traceback.format_exception(raised.value))
    assert "INTERCOM_ACCESS_TOKEN_FILE" in text and canaries[0] not in text
