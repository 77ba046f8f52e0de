"""The example clients in examples/ (Node and Python), run as their READMEs run them, against a sidecar in this
process delivering to the fake Intercom."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import Sidecar
from tests.ports import closed_loopback_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "examples" / "node"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    """`node examples/node/send.js`, after `npm ci` when node_modules is missing or older than the lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed to test examples/node in CI")
        pytest.skip("node or npm is not installed: examples/node is not tested")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (NODE_DIR / "package-lock.json").stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--ignore-scripts"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return [node, str(NODE_DIR / "send.js")]


@pytest.fixture(params=["node", "python"])
def client(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "node":
        command: list[str] = request.getfixturevalue("node_client")
        return command
    return [sys.executable, str(ROOT / "examples" / "python" / "send.py")]


async def _run(command: list[str], *args: str) -> tuple[int, list[list[str]], str]:
    process = await asyncio.create_subprocess_exec(
        *command, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    rows = [line.split("\t") for line in stdout.decode().splitlines()]
    return process.returncode, rows, stderr.decode()


async def test_client_delivers_an_identify_and_a_track_in_the_callers_trace(
    client: list[str], sidecar: Sidecar, fake_intercom: FakeIntercom
) -> None:
    code, rows, stderr = await _run(
        client, "--target", sidecar.target, "--user-id", "user-ex", "--ack-mode", "delivered",
        "--traceparent", TRACEPARENT,
    )  # fmt: skip
    assert code == 0, stderr
    assert [(row[0].rsplit("-", 5)[0], row[1], row[2]) for row in sorted(rows, key=lambda row: row[0])] == [
        (f"{client_name(client)}-identify", "DELIVERED", TRACE_ID),
        (f"{client_name(client)}-track", "DELIVERED", TRACE_ID),
    ]
    [contact] = fake_intercom.state.contacts.values()
    assert (contact.external_id, contact.email, contact.custom_attributes) == (
        "user-ex",
        "user-ex@example.com",
        {"plan": "pro"},
    )
    [event] = fake_intercom.state.events
    assert (event.event_name, event.user_id, event.metadata) == (
        "Order Completed",
        "user-ex",
        {"price": {"amount": 1999, "currency": "usd"}},
    )


async def test_client_exits_non_zero_when_an_event_is_not_accepted(client: list[str], sidecar: Sidecar) -> None:
    code, rows, _ = await _run(client, "--target", sidecar.target, "--user-id", "")  # no user id: INVALID
    assert code == 1
    assert [row[1] for row in rows] == ["INVALID", "INVALID"]
    assert all("user_id" in row[3] or "anonymous_id" in row[3] for row in rows), rows


async def test_client_reports_an_unreachable_sidecar_on_one_line(client: list[str]) -> None:
    unused_port = closed_loopback_port()
    code, rows, stderr = await _run(client, "--target", f"127.0.0.1:{unused_port}")
    assert code == 2
    assert rows == []
    [line] = stderr.strip().splitlines()
    assert f"127.0.0.1:{unused_port}: UNAVAILABLE" in line


def client_name(command: list[str]) -> str:
    return "node" if command[-1].endswith(".js") else "python"
