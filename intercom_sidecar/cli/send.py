"""`intercom-sidecar send`: stream Segment JSON events to a running sidecar and print one ack per event.

Input is NDJSON (one event per line), a single JSON object, or a JSON array, from files or standard input.
Exit status: 0 when every event was accepted (or delivered, filtered, duplicate), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, TextIO

import grpc

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2_grpc
from intercom_sidecar.cli.segment_json import SegmentJsonError, event_from_segment_json, loads

__all__ = ["add_arguments", "read_events", "run"]

_OK = {"STATUS_ACCEPTED", "STATUS_DELIVERED", "STATUS_DUPLICATE", "STATUS_FILTERED"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", default=["-"], help="NDJSON or JSON files; - or none for stdin")
    parser.add_argument(
        "--target",
        default=os.environ.get("INTERCOM_SIDECAR_LISTEN", "127.0.0.1:50051"),
        help="the sidecar's gRPC address (default INTERCOM_SIDECAR_LISTEN or 127.0.0.1:50051)",
    )
    parser.add_argument("--ack-mode", choices=("accepted", "delivered"), default="accepted", help="when to acknowledge")
    parser.add_argument("--json", action="store_true", help="print acks as JSON lines instead of a table")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for all acks")


def read_events(stream: TextIO, source: str) -> Iterator[event_pb2.Event | str]:
    """Events from NDJSON, a JSON object or a JSON array; a problem comes out as a message string."""
    text = stream.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items: list[tuple[int, Any]] = list(enumerate(loads(text), 1))
        except ValueError as exc:
            yield f"{source}: not valid JSON: {exc}"
            return
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((number, loads(line)))
            except ValueError as exc:
                if number == 1 and stripped.startswith("{"):
                    try:  # a single pretty-printed JSON object
                        items = [(1, loads(text))]
                        break
                    except ValueError:
                        pass
                yield f"{source}:{number}: not valid JSON: {exc}"
    for number, item in items:
        try:
            yield event_from_segment_json(item)
        except SegmentJsonError as exc:
            yield f"{source}:{number}: {exc}"


async def run(args: argparse.Namespace) -> int:
    events: list[event_pb2.Event] = []
    problems = 0
    for name in args.files:
        with sys.stdin if name == "-" else open(name, encoding="utf-8") as stream:
            for item in read_events(stream, "stdin" if name == "-" else name):
                if isinstance(item, str):
                    print(f"skipped {item}", file=sys.stderr)
                    problems += 1
                else:
                    events.append(item)
    acks = await _stream(args.target, events, args.ack_mode, args.timeout) if events else []
    # Acks come back in whatever order outcomes are known; show them in the order the events were read.
    position = {event.message_id: n for n, event in enumerate(events)}
    acks.sort(key=lambda ack: position.get(ack.message_id, len(position)))
    _print(acks, as_json=args.json)
    failed = problems + sum(1 for ack in acks if event_pb2.Ack.Status.Name(ack.status) not in _OK)
    return 1 if failed or len(acks) < len(events) else 0


async def _stream(target: str, events: list[event_pb2.Event], ack_mode: str, timeout: float) -> list[event_pb2.Ack]:
    async def requests() -> AsyncIterator[event_pb2.Event]:
        for event in events:
            yield event

    acks: list[event_pb2.Ack] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        call = stub.Stream(requests(), metadata=(("x-ack-mode", ack_mode),), timeout=timeout)
        try:
            async for ack in call:
                acks.append(ack)
        except grpc.aio.AioRpcError as exc:
            print(f"intercom-sidecar send: {target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
    return acks


def _print(acks: list[event_pb2.Ack], *, as_json: bool) -> None:
    rows = [
        {
            "message_id": ack.message_id,
            "status": event_pb2.Ack.Status.Name(ack.status).removeprefix("STATUS_"),
            "reason": ack.reason,
            "trace_id": ack.trace_id,
            **(
                {"retry_after_seconds": ack.retry_after.ToTimedelta().total_seconds()}
                if ack.HasField("retry_after")
                else {}
            ),
        }
        for ack in acks
    ]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    widths = {
        key: max([len(key), *(len(str(row.get(key, ""))) for row in rows)])
        for key in ("message_id", "status", "trace_id")
    }
    header = "  ".join(key.upper().ljust(widths[key]) for key in widths) + "  REASON"
    print(header)
    for row in rows:
        print("  ".join(str(row[key]).ljust(widths[key]) for key in widths) + f"  {row['reason']}")
