"""The output of `intercom-sidecar send`: acks as a table or as JSON lines, and progress on a terminal."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TextIO

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2

__all__ = ["Progress", "print_acks"]

_TABLE_COLUMNS = ("message_id", "status", "trace_id")


def print_acks(acks: list[event_pb2.Ack], out: TextIO, *, as_json: bool) -> None:
    """One JSON object per line, or a table with a header (REASON last, as it may be long)."""
    rows = [_row(ack) for ack in acks]
    if as_json:
        for row in rows:
            print(json.dumps(row), file=out)
        return
    widths = {key: max([len(key), *(len(str(row[key])) for row in rows)]) for key in _TABLE_COLUMNS}
    print("  ".join(key.upper().ljust(widths[key]) for key in widths) + "  REASON", file=out)
    for row in rows:
        print("  ".join(str(row[key]).ljust(widths[key]) for key in widths) + f"  {row['reason']}", file=out)


def _row(ack: event_pb2.Ack) -> dict[str, Any]:
    row: dict[str, Any] = {
        "message_id": ack.message_id,
        "status": event_pb2.Ack.Status.Name(ack.status).removeprefix("STATUS_"),
        "reason": ack.reason,
        "trace_id": ack.trace_id,
    }
    if ack.HasField("retry_after"):
        row["retry_after_seconds"] = ack.retry_after.ToTimedelta().total_seconds()
    return row


class Progress:
    """`sent N/M, acknowledged K` on one line of `out`, rewritten at most every `interval` seconds, and only when
    `out` is a terminal and there are at least `min_total` events. `close()` erases it."""

    def __init__(
        self,
        total: int,
        out: TextIO,
        *,
        min_total: int = 100,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._total = total
        self._out = out
        self._enabled = total >= min_total and out.isatty()
        self._interval = interval
        self._clock = clock
        self._shown_at: float | None = None
        self.sent = 0
        self.acked = 0

    def update(self, *, sent: int = 0, acked: int = 0) -> None:
        self.sent += sent
        self.acked += acked
        if not self._enabled:
            return
        now = self._clock()
        if self._shown_at is not None and now - self._shown_at < self._interval and self.acked < self._total:
            return
        self._shown_at = now
        percent = 100 * self.acked // self._total
        self._out.write(
            f"\rintercom-sidecar send: sent {self.sent:,}/{self._total:,}, acknowledged {self.acked:,} ({percent}%)"
        )
        self._out.flush()

    def close(self) -> None:
        if self._shown_at is not None:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._shown_at = None
