"""The canary test of the observability issue: the access token and the identity secret never leave the process.

The real sidecar runs as `intercom-sidecar serve` against a fake Intercom (another process) that accepts only a
canary token. It logs at DEBUG and prints its spans (`OTEL_TRACES_EXPORTER=console`). Events are delivered, invalid,
rejected by Intercom, retried on 5xx and connection resets until their budget runs out, and paused by a 401; then
SIGTERM. Neither canary may appear in standard output (spans), standard error (logs), the spool's files, or any
ack or RPC answer.
"""

from __future__ import annotations

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


def sidecar_env(tmp_path: Path, fake_url: str, canaries: tuple[str, str]) -> dict[str, str]:
    token_file = tmp_path / "access-token"
    token_file.write_text(canaries[0] + "\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("INTERCOM_", "OTEL_"))}
    return {
        **env,
        "PYTHONUNBUFFERED": "1",
        "INTERCOM_API_URL": fake_url,
        "INTERCOM_ACCESS_TOKEN_FILE": str(token_file),
        "INTERCOM_IDENTITY_SECRET": canaries[1],
        "INTERCOM_SIDECAR_LOG_LEVEL": "DEBUG",
        "INTERCOM_SIDECAR_SPOOL": "sqlite",
        "INTERCOM_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),
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
    "echo",
    [
        pytest.param(False, id="intercom-is-discreet"),
        pytest.param(True, id="intercom-echoes-the-token"),
    ],
)
def test_no_secret_in_logs_spans_spool_or_acks(
    tmp_path: Path, fake_url: str, canaries: tuple[str, str], echo: bool
) -> None:
    """With `echo`, one of Intercom's answers quotes the token (as a gateway in the way might): the sidecar must not
    pass it on either."""
    process = subprocess.Popen(
        [*COMMAND, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=sidecar_env(tmp_path, fake_url, canaries),
    )
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = Lines(process.stdout), Lines(process.stderr)
    answers: list[str] = []  # every ack and RPC answer, as text
    try:
        target = stderr.wait_for(r"Listening for gRPC on `(127\.0\.0\.1:\d+)`").group(1)
        with grpc.insecure_channel(target) as channel, httpx.Client(base_url=fake_url, timeout=5) as fake:
            stub = service_pb2_grpc.EventServiceStub(channel)

            def send(*events: event_pb2.Event, metadata: Any = DELIVERED) -> list[event_pb2.Ack]:
                reply = stub.Send(service_pb2.SendRequest(events=events), metadata=metadata, timeout=10)
                answers.extend(map(str, reply.acks))
                return list(reply.acks)

            def fault(**scripted: Any) -> None:
                fake.post("/_fake/faults", json={"scripted": [scripted]}).raise_for_status()

            if echo:
                fault(method="POST", path_prefix="/events", status=400, message=f"Bad token {canaries[0]}")
                [echoed] = send(track("m-echo", "u0"))
                assert echoed.status == Ack.STATUS_REJECTED
            _exercise(send, fault, channel, canaries[1], answers)
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
    places.update({f"spool file {p.name}": p.read_bytes() for p in (tmp_path / "spool").rglob("*") if p.is_file()})
    assert "spool file spool.db" in places
    leaks = _leaks(places, canaries)
    assert not leaks, "\n".join(leaks)


def _exercise(
    send: Callable[..., list[event_pb2.Ack]],
    fault: Callable[..., None],
    channel: grpc.Channel,
    identity_secret: str,
    answers: list[str],
) -> None:
    """Delivered, invalid, rejected, retried until the budget ran out (5xx, connection resets), paused by a 401."""
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

    fault(method="*", path_prefix="/", status=401, times=1)
    [accepted] = send(identify("m-401", "u4", email="bob@example.com"), metadata=())
    assert accepted.status == Ack.STATUS_ACCEPTED
    _until_not_serving(channel)
    [later] = send(track("m-paused", "u4"), metadata=())
    assert later.status == Ack.STATUS_RETRY_LATER and "401" in later.reason


def _until_not_serving(channel: grpc.Channel) -> None:
    """Readiness turns NOT_SERVING once the 401 paused delivery."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 5
    while health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status != NOT_SERVING:
        assert time.monotonic() < deadline, "delivery never paused"
        time.sleep(0.02)


def _leaks(places: dict[str, bytes], canaries: tuple[str, str]) -> list[str]:
    """Where each canary shows up, with what surrounds its first occurrence."""
    found = []
    for name, canary in zip(("access token", "identity secret"), canaries, strict=True):
        for place, data in places.items():
            if (at := data.find(canary.encode())) >= 0:
                found.append(f"{name} in {place}: ...{data[max(0, at - 200) : at + len(canary) + 60]!r}")
    return found
