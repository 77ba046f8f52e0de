"""The fake-intercom command line: flags, and serving until cancelled."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

import httpx
import pytest

from intercom_sidecar.fake import cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser


def test_defaults() -> None:
    args = _parser().parse_args([])
    assert (args.host, args.port, args.token) == ("127.0.0.1", 8089, "fake-token")
    assert (args.limit_per_window, args.window_seconds, args.seed) == (1666, 10.0, 0)
    assert args.data_attribute == []


def test_bad_attribute_flag_is_rejected() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--data-attribute", "nomodel"])


class _Lines:
    """Stands in for stdout and tells when a line was printed."""

    def __init__(self) -> None:
        self.text = ""
        self.printed = asyncio.Event()

    def write(self, text: str) -> int:
        self.text += text
        if "\n" in text:
            self.printed.set()
        return len(text)

    def flush(self) -> None:
        pass


async def test_run_serves_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Lines()
    monkeypatch.setattr(sys, "stdout", out)
    args = _parser().parse_args(
        [
            "--port",
            "0",
            "--token",
            "t0k",
            "--limit-per-window",
            "7",
            "--data-attribute",
            "plan:contact:string",
        ]
    )
    task = asyncio.create_task(cli.run(args))
    await asyncio.wait_for(out.printed.wait(), timeout=5)
    found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", out.text)
    assert found, out.text
    headers = {"Authorization": "Bearer t0k", "Intercom-Version": "2.16"}
    async with httpx.AsyncClient(base_url=found.group(1), headers=headers) as client:
        response = await client.get("/data_attributes", params={"model": "contact"})
        assert response.headers["x-ratelimit-limit"] == "7"
        assert "plan" in {a["name"] for a in response.json()["data"] if a["custom"]}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
