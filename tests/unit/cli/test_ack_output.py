"""`send`'s output: acks as a table or JSON lines, and progress only on a terminal."""

from __future__ import annotations

import io
import json

from google.protobuf import duration_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.cli.ack_output import Progress, print_acks

ACKS = [
    event_pb2.Ack(message_id="m-1", status=event_pb2.Ack.STATUS_ACCEPTED, trace_id="ab" * 16),
    event_pb2.Ack(
        message_id="m-22",
        status=event_pb2.Ack.STATUS_RETRY_LATER,
        reason="queue full",
        trace_id="cd" * 16,
        retry_after=duration_pb2.Duration(seconds=1, nanos=500_000_000),
    ),
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_table() -> None:
    out = io.StringIO()
    print_acks(ACKS, out, as_json=False)
    assert out.getvalue().splitlines() == [
        "MESSAGE_ID  STATUS       TRACE_ID                          REASON",
        f"m-1         ACCEPTED     {'ab' * 16}  ",
        f"m-22        RETRY_LATER  {'cd' * 16}  queue full",
    ]


def test_json_lines() -> None:
    out = io.StringIO()
    print_acks(ACKS, out, as_json=True)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"message_id": "m-1", "status": "ACCEPTED", "reason": "", "trace_id": "ab" * 16},
        {
            "message_id": "m-22",
            "status": "RETRY_LATER",
            "reason": "queue full",
            "trace_id": "cd" * 16,
            "retry_after_seconds": 1.5,
        },
    ]


def test_progress_on_a_terminal_is_throttled_and_erased() -> None:
    now = [0.0]
    out = Terminal()
    progress = Progress(200, out, interval=1.0, clock=lambda: now[0])
    progress.update(sent=200)
    for _ in range(99):
        progress.update(acked=1)  # the clock stands still: no more lines after the first
    now[0] = 1.0
    progress.update(acked=1)
    assert out.getvalue().split("\r")[1:] == [
        "intercom-sidecar send: sent 200/200, acknowledged 0 (0%)",
        "intercom-sidecar send: sent 200/200, acknowledged 100 (50%)",
    ]
    progress.update(acked=100)  # the last ack is always shown
    assert out.getvalue().endswith("\rintercom-sidecar send: sent 200/200, acknowledged 200 (100%)")
    progress.close()
    assert out.getvalue().endswith("\r\x1b[K")


def test_no_progress_when_not_a_terminal_or_a_short_send() -> None:
    piped = io.StringIO()
    Progress(10_000, piped).update(sent=10_000, acked=10_000)
    short = Terminal()
    Progress(99, short).update(sent=99, acked=99)
    assert piped.getvalue() == short.getvalue() == ""
