"""kill -9 with 10,000 accepted but undelivered events (Intercom answering 503), then a restart on the same spool:
every event arrives exactly once, with its original created_at, and each user's events in the order sent.

The sidecar is the real process (`python -m intercom_sidecar serve`); the fake Intercom runs in this test's loop, so
nothing here may block the loop: the process's standard error is read by a thread, and waits go through threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.fake import FakeIntercom
from tests.openapi_schemas import validate_ledger_requests

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "intercom_sidecar", "serve", "--listen", "127.0.0.1:0"]

EVENTS = 10_000
USERS = 500
BATCH = 500
T0 = 1_790_000_000
"""Event n happens at T0 + n: Intercom (and the fake) take two events of one user with the same name and
created_at for one, so every event gets its own second."""


class Sidecar:
    """The sidecar as a child process; a thread reads its standard error (JSON log lines) to the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(COMMAND, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self.messages: list[str] = []
        """The `message` of each log line."""
        self.target = ""
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            try:
                message = str(json.loads(line).get("message", ""))
            except ValueError:  # not a log line (a traceback, say)
                message = line
            self.messages.append(message)
            if not self.target and (found := re.search(r"Listening for gRPC on `(127\.0\.0\.1:\d+)`", message)):
                self.target = found.group(1)
                self._listening.set()
        self._listening.set()  # the process ended (before listening, if target is still empty)

    async def listening(self) -> str:
        await asyncio.to_thread(self._listening.wait, 30)
        assert self.target, "the sidecar did not say where it listens:\n" + self.log()
        return self.target

    async def wait(self, timeout: float) -> int:
        return await asyncio.to_thread(self.process.wait, timeout)

    def log(self) -> str:
        return "".join(self.lines[-40:])

    async def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        await self.wait(10)
        await asyncio.to_thread(self._reader.join, 10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeIntercom]:
    # A rate limit far above this test's traffic, and a ledger that keeps every request.
    fake = FakeIntercom(limit_per_window=1_000_000, ledger_max_entries=None)
    await fake.start("127.0.0.1", 0)
    try:
        yield fake
    finally:
        await fake.stop()
    validate_ledger_requests(fake.ledger)  # every request the sidecar sent matches Intercom's OpenAPI schemas


@pytest.fixture
async def spawn_sidecar(fake: FakeIntercom, tmp_path: Path) -> AsyncIterator[Callable[[], Sidecar]]:
    env = {
        **os.environ,
        "INTERCOM_API_URL": fake.url,
        "INTERCOM_ACCESS_TOKEN": fake.token,
        "INTERCOM_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),  # the same spool for every process started
        "INTERCOM_SIDECAR_QUEUE_MAX_EVENTS": "20000",
        "INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS": "0.05",
        "INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS": "0.2",
        "INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS": "5",
        "INTERCOM_SIDECAR_SEGMENT_LISTEN": "127.0.0.1:0",
        "INTERCOM_SIDECAR_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("INTERCOM_ACCESS_TOKEN_FILE", "INTERCOM_REGION", "INTERCOM_SIDECAR_SPOOL", "INTERCOM_SIDECAR_LISTEN"):
        env.pop(name, None)
    started: list[Sidecar] = []

    def start() -> Sidecar:
        started.append(Sidecar(env))
        return started[-1]

    try:
        yield start
    finally:
        for sidecar in started:
            await sidecar.close()


def track(n: int) -> event_pb2.Event:
    properties = struct_pb2.Struct()
    properties.update({"n": n})
    event = event_pb2.Event(
        message_id=f"m{n}", user_id=user_of(n), track=event_pb2.Track(event="Paid", properties=properties)
    )
    event.timestamp.FromSeconds(T0 + n)
    return event


def user_of(n: int) -> str:
    return f"user-{n % USERS}"


async def wait_for(condition: Callable[[], bool], timeout: float, what: str, sidecar: Sidecar) -> None:
    """Poll `condition` (it reads the fake's state, which the loop updates) until it holds, at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert sidecar.process.poll() is None, f"the sidecar exited while waiting for {what}:\n{sidecar.log()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{sidecar.log()}"
        await asyncio.sleep(0.05)


def event_posts(fake: FakeIntercom, status: int, since: int = 0) -> list[int]:
    """The `n` of each `POST /events` the fake answered with `status`, in the order it received them."""
    return [
        entry.body["metadata"]["n"]
        for entry in fake.ledger[since:]
        if entry.method == "POST" and entry.path == "/events" and entry.status == status
    ]


async def test_kill_9_with_10000_undelivered_events_then_restart_delivers_each_once_in_order(
    fake: FakeIntercom, spawn_sidecar: Callable[[], Sidecar]
) -> None:
    fake.faults.script("POST", "/events", status=503, times=10**9)  # Intercom is down for events

    first = spawn_sidecar()
    target = await first.listening()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        statuses: Counter[str] = Counter()
        for start in range(0, EVENTS, BATCH):
            request = service_pb2.SendRequest(events=[track(n) for n in range(start, start + BATCH)])
            response = await stub.Send(request, timeout=30)
            assert [ack.message_id for ack in response.acks] == [f"m{n}" for n in range(start, start + BATCH)]
            statuses.update(event_pb2.Ack.Status.Name(ack.status) for ack in response.acks)
    assert statuses == {"STATUS_ACCEPTED": EVENTS}

    # It is retrying: 503s keep coming after the last ack.
    acked_at = len(fake.ledger)
    await wait_for(lambda: len(event_posts(fake, 503, since=acked_at)) >= 20, 10, "503s after the acks", first)
    assert event_posts(fake, 202) == [], "nothing can have been delivered while Intercom answers 503"
    first.process.send_signal(signal.SIGKILL)
    assert await first.wait(10) == -signal.SIGKILL
    assert fake.state.events == []

    fake.faults.clear()  # Intercom is back
    killed_at = len(fake.ledger)
    second = spawn_sidecar()
    await second.listening()
    # 10,000 events plus 500 contact creations: about 15-20 s on a 2-core machine (the sidecar is CPU-bound).
    await wait_for(lambda: len(fake.state.events) >= EVENTS, 60, f"{EVENTS} events in the fake", second)
    recovered = [message for message in second.messages if message.startswith("Recovered 10000 pending events ")]
    assert recovered, "the second process recovers the 10,000 events from the spool:\n" + second.log()

    arrived = sorted((event.metadata["n"], event.created_at, event.user_id) for event in fake.state.events)
    assert arrived == [(n, T0 + n, user_of(n)) for n in range(EVENTS)], "each event, with its original created_at"
    # The fake stores one event per (user, name, created_at), so count what Intercom took, request by request.
    taken = event_posts(fake, 202, since=killed_at)
    repeated = {n: count for n, count in Counter(taken).items() if count > 1}
    assert len(taken) == EVENTS and not repeated, f"delivered more than once: {dict(list(repeated.items())[:10])}"
    per_user: dict[str, list[int]] = {}
    for n in taken:
        per_user.setdefault(user_of(n), []).append(n)
    out_of_order = {user: ns for user, ns in per_user.items() if ns != list(range(int(user[5:]), EVENTS, USERS))}
    assert not out_of_order, (
        f"per-user order broken for {len(out_of_order)} users, e.g. {next(iter(out_of_order.items()))}"
    )
    # Every attempt, before the crash (503) and after it (404 for a new user, then 202), had the same created_at.
    created = {(entry.body["metadata"]["n"], entry.body["created_at"]) for entry in fake.requests("POST", "/events")}
    assert created == {(n, T0 + n) for n in range(EVENTS)}

    second.process.send_signal(signal.SIGTERM)
    assert await second.wait(15) == 0, second.log()
