"""`intercom-sidecar send` against a sidecar on loopback: input shapes, output formats, one-line errors."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pytest

from intercom_sidecar import __main__ as command_line
from intercom_sidecar.__main__ import _parser
from intercom_sidecar.cli import send
from tests.e2e.conftest import Sidecar
from tests.ports import closed_loopback_port

pytestmark = pytest.mark.e2e

TRACK = {"type": "track", "messageId": "s-track", "userId": "u1", "event": "Order Completed"}
IDENTIFY = {"type": "identify", "messageId": "s-identify", "userId": "u1", "traits": {"plan": "pro"}}
INVALID = {"type": "track", "messageId": "s-invalid", "userId": "u1", "event": ""}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def arguments(target: str, *files: str, json_output: bool | None = None) -> argparse.Namespace:
    """`send`'s arguments as its own parser makes them (connection options included)."""
    output = [] if json_output is None else ["--json" if json_output else "--table"]
    return _parser().parse_args(["send", "--target", target, "--timeout", "30", *output, *files])


async def test_a_pretty_printed_event_from_stdin_prints_json_lines_when_piped(
    sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(IDENTIFY, indent=2)))

    assert await send.run(arguments(sidecar.target)) == 0

    out, err = capsys.readouterr()
    [row] = map(json.loads, out.splitlines())
    assert (row["message_id"], row["status"]) == ("s-identify", "ACCEPTED")
    assert err == ""


async def test_an_array_file_prints_a_table_on_a_terminal_and_exits_1_for_an_invalid_event(
    sidecar: Sidecar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.json"
    events.write_text(json.dumps([IDENTIFY, TRACK, INVALID], indent=2))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)

    assert await send.run(arguments(sidecar.target, str(events))) == 1

    lines = terminal.getvalue().splitlines()
    assert lines[0].split() == ["MESSAGE_ID", "STATUS", "TRACE_ID", "REASON"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["s-identify", "ACCEPTED"],
        ["s-track", "ACCEPTED"],
        ["s-invalid", "INVALID"],
    ]
    assert lines[3].endswith("track.event: must not be empty")


async def test_json_and_table_flags_win_over_the_terminal_check(
    sidecar: Sidecar, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps(TRACK) + "\n")
    assert await send.run(arguments(sidecar.target, str(events), json_output=False)) == 0
    assert capsys.readouterr().out.startswith("MESSAGE_ID  STATUS")


async def test_unreadable_lines_are_reported_and_make_the_exit_status_1(
    sidecar: Sidecar, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps(TRACK) + "\n{oops\n")

    assert await send.run(arguments(sidecar.target, str(events))) == 1

    out, err = capsys.readouterr()
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["ACCEPTED"]
    assert err == (
        f"intercom-sidecar send: skipped {events}:2: not valid JSON: "
        "Expecting property name enclosed in double quotes at column 2\n"
    )


async def test_a_sidecar_that_is_not_running_is_one_line_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps(TRACK) + "\n")
    target = f"127.0.0.1:{closed_loopback_port()}"

    assert await send.run(arguments(target, str(events))) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"intercom-sidecar send: cannot reach the sidecar at {target} (Connection refused): is it running? "
        "(start it with `make run`; see --target)\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {path}: No such file or directory: give NDJSON or JSON files, or - for stdin"),
        (b"\xff\xfe{}", "cannot read {path}: not UTF-8 text (byte 0): save it as UTF-8 JSON"),
        (b"\n\n", "no events to send in {path}"),
    ],
)
async def test_input_that_cannot_be_sent_is_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "events.ndjson"
    if content is not None:
        path.write_bytes(content)

    assert await send.run(arguments("127.0.0.1:1", str(path))) == 2

    assert capsys.readouterr().err == f"intercom-sidecar send: {message.format(path=path)}\n"


def test_an_unexpected_error_is_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("bug near Authorization: Bearer s3cr3t-token")

    monkeypatch.setattr(send, "run", broken)
    monkeypatch.setattr(command_line, "_configure_logging", lambda: None)  # it would install a root log handler

    assert command_line.main(["send", "-"]) == 70
    assert capsys.readouterr().err == (
        "intercom-sidecar: unexpected error: RuntimeError: bug near Authorization: Bearer [REDACTED] "
        "(rerun as `intercom-sidecar --debug ...` for the traceback)\n"
    )
    with pytest.raises(RuntimeError, match="bug near"):
        command_line.main(["--debug", "send", "-"])
