"""`intercom-sidecar check` against the fake Intercom: a valid token, a wrong one, an unreachable API, bad config."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from intercom_sidecar.cli import check
from intercom_sidecar.fake import FakeIntercom
from tests.ports import closed_loopback_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def env_for(fake: FakeIntercom, **overrides: str) -> dict[str, str]:
    return {"INTERCOM_API_URL": fake.url, "INTERCOM_ACCESS_TOKEN": fake.token, **overrides}


async def test_a_valid_token_reports_the_app_region_and_version(
    fake_intercom: FakeIntercom, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("INTERCOM_"):
            monkeypatch.delenv(key)
    for key, value in env_for(fake_intercom, INTERCOM_API_VERSION="2.15").items():
        monkeypatch.setenv(key, value)

    assert await check.run(argparse.Namespace(json=False)) == check.EXIT_OK

    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "intercom-sidecar check: OK"
    assert lines[1].split(None, 1) == ["app", '"Fake Intercom" (id fakeapp1), hosted in US']
    assert lines[2].split(None, 1) == ["API", f"{fake_intercom.url} (set by INTERCOM_API_URL), Intercom-Version 2.15"]
    assert lines[3].split(None, 1) == ["token", "from INTERCOM_ACCESS_TOKEN, accepted by Intercom"]
    assert "GET /me" in out
    [request] = fake_intercom.ledger
    assert (request.method, request.path, request.status) == ("GET", "/me", 200)


async def test_json_output_and_the_region_of_a_token_file(
    fake_intercom: FakeIntercom, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(fake_intercom.token + "\n")
    monkeypatch.setattr(
        os, "environ", {"INTERCOM_API_URL": fake_intercom.url, "INTERCOM_ACCESS_TOKEN_FILE": str(token_file)}
    )

    assert await check.run(argparse.Namespace(json=True)) == check.EXIT_OK

    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["ok"] is True
    assert result["app"] == {"name": "Fake Intercom", "id": "fakeapp1", "region": "US"}
    assert (result["api_url"], result["region"], result["api_version"]) == (fake_intercom.url, "custom", "2.16")
    assert result["token_source"] == "INTERCOM_ACCESS_TOKEN_FILE"
    assert len(result["checked"]) == 2
    assert err == ""


async def test_a_wrong_token_is_one_line_naming_the_variable(fake_intercom: FakeIntercom) -> None:
    result = await check.check(env_for(fake_intercom, INTERCOM_ACCESS_TOKEN="not-the-token"))

    assert result.exit_code == check.EXIT_REFUSED
    assert result.error == (
        "the token was rejected by Intercom (401 unauthorized: Access Token Invalid): set INTERCOM_ACCESS_TOKEN to "
        "a valid access token (or INTERCOM_REGION, if the app is hosted in another region)"
    )
    assert "not-the-token" not in repr(result)


async def test_an_unknown_api_version_names_intercom_api_version(fake_intercom: FakeIntercom) -> None:
    result = await check.check(env_for(fake_intercom, INTERCOM_API_VERSION="9.99"))

    assert result.exit_code == check.EXIT_REFUSED
    assert result.error.startswith("Intercom does not know API version 9.99 (400 intercom_version_invalid")
    assert result.error.endswith(": fix INTERCOM_API_VERSION")


async def test_an_unreachable_intercom_is_exit_3() -> None:
    url = f"http://127.0.0.1:{closed_loopback_port()}"
    result = await check.check({"INTERCOM_API_URL": url, "INTERCOM_ACCESS_TOKEN": "t"})

    assert result.exit_code == check.EXIT_UNREACHABLE
    assert result.error.startswith(f"cannot reach Intercom at {url} (ConnectError")
    assert result.error.endswith("check the network, and INTERCOM_REGION or INTERCOM_API_URL")


async def test_a_config_error_is_exit_2_and_names_the_variable() -> None:
    result = await check.check({"INTERCOM_ACCESS_TOKEN": "t", "INTERCOM_REGION": "mars"})

    assert result.exit_code == check.EXIT_CONFIG
    assert result.error == "configuration error: INTERCOM_REGION: must be one of us, eu, au, got 'mars'"
    assert len(result.checked) == 1


async def test_the_command_line_prints_one_line_and_exits_1_for_a_wrong_token(fake_intercom: FakeIntercom) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("INTERCOM_")}
    env.update(env_for(fake_intercom, INTERCOM_ACCESS_TOKEN="wrong"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "intercom_sidecar", "check", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 1, err.decode()
    [line] = err.decode().splitlines()
    assert line.startswith("intercom-sidecar check: the token was rejected by Intercom (401 unauthorized")
    assert out == b""
