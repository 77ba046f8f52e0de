"""The real command line, as `make run` and the README use it: `serve --fake-intercom`, then `send`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "intercom_sidecar"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    env = {
        **os.environ,
        "INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS": "5",
        "INTERCOM_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),
        "INTERCOM_SIDECAR_SEGMENT_LISTEN": "127.0.0.1:0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("INTERCOM_ACCESS_TOKEN", None)
    env.pop("INTERCOM_ACCESS_TOKEN_FILE", None)
    process = subprocess.Popen(
        [*COMMAND, "serve", "--fake-intercom", "--fake-intercom-port", "0", "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert process.stderr is not None
    fake_url = grpc_target = ""
    for line in process.stderr:  # the start-up lines say where things listen
        if found := re.search(r"fake Intercom at `(http://127\.0\.0\.1:\d+)`", line):
            fake_url = found.group(1)
        if found := re.search(r"Listening for gRPC on `(127\.0\.0\.1:\d+)`", line):
            grpc_target = found.group(1)
            break
    assert fake_url and grpc_target, "the sidecar did not report where it listens"
    drain = threading.Thread(target=process.stderr.read, daemon=True)  # keep the pipe from filling up
    drain.start()
    try:
        yield process, fake_url, grpc_target
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        drain.join(timeout=5)
        process.stderr.close()


def test_send_delivers_into_the_embedded_fake_and_sigterm_exits_cleanly(
    served: tuple[subprocess.Popen[str], str, str],
) -> None:
    process, fake_url, target = served
    sent = subprocess.run(
        [*COMMAND, "send", "--target", target, "--json", str(ROOT / "examples" / "events.ndjson")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    acks = {row["message_id"]: row for row in map(json.loads, sent.stdout.splitlines())}
    assert {key: row["status"] for key, row in acks.items()} == {
        "demo-identify-1": "ACCEPTED",
        "demo-track-1": "ACCEPTED",
        "demo-track-2": "INVALID",
    }
    assert acks["demo-track-2"]["reason"] == "track.event: must not be empty"
    assert sent.returncode == 1, "an INVALID ack makes `send` exit non-zero"

    state = _wait_for_state(fake_url, lambda s: len(s["events"]) >= 1)
    [contact] = state["contacts"]
    assert (contact["external_id"], contact["email"]) == ("user-42", "ada@example.com")
    assert [event["event_name"] for event in state["events"]] == ["Order Completed"]

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


def _wait_for_state(url: str, ready: object) -> dict[str, object]:
    """Poll the fake's state until `ready(state)`: delivery is asynchronous to the ACCEPTED ack."""
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            state: dict[str, object] = client.get("/_fake/state").json()
            if ready(state) or time.monotonic() > deadline:  # type: ignore[operator]
                return state
            time.sleep(0.05)
