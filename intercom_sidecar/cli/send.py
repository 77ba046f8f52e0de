"""`intercom-sidecar send`: stream Segment JSON events to a running sidecar and print one ack per event.

Input is NDJSON (one event per line), JSON objects (pretty-printed or not) or a JSON array, from files or standard
input (`cli/event_input.py`). Acks are printed as a table on a terminal and as JSON lines otherwise (`--json` and
`--table` choose), in the order the events were read; a long send shows its progress on standard error when that is
a terminal (`cli/ack_output.py`). Every error is one line on standard error saying what to do. Exit status:

    0  every event was accepted (or delivered, filtered, duplicate)
    1  some event was not (INVALID, REJECTED, RETRY_LATER), or could not be read from the input
    2  the events could not all be sent: an input file is unreadable or holds no events, or the call to the sidecar
       failed (not running, timed out, ended early); the acks received until then are printed
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2_grpc
from intercom_sidecar.cli.ack_output import Progress, print_acks
from intercom_sidecar.cli.connect import add_connection_arguments, call_metadata, open_channel
from intercom_sidecar.cli.event_input import read_events

__all__ = ["add_arguments", "describe_rpc_error", "run"]

_OK = {"STATUS_ACCEPTED", "STATUS_DELIVERED", "STATUS_DUPLICATE", "STATUS_FILTERED"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", default=["-"], help="NDJSON or JSON files; - or none for stdin")
    parser.add_argument(
        "--target",
        default=os.environ.get("INTERCOM_SIDECAR_LISTEN", "127.0.0.1:50051"),
        help="the sidecar's gRPC address (default INTERCOM_SIDECAR_LISTEN or 127.0.0.1:50051)",
    )
    parser.add_argument("--ack-mode", choices=("accepted", "delivered"), default="accepted", help="when to acknowledge")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", default=None, help="print acks as JSON lines")
    output.add_argument(
        "--table", dest="json", action="store_false", help="print acks as a table (the default on a terminal)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for all acks")
    add_connection_arguments(parser)


class _InputError(Exception):
    """An input file that cannot be read at all."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    acks: list[event_pb2.Ack]
    error: str = ""
    """One line describing why the call failed; empty when it did not."""


async def run(args: argparse.Namespace) -> int:
    try:
        events, problems = _read_inputs(args.files)
    except _InputError as error:
        print(f"intercom-sidecar send: {error}", file=sys.stderr)
        return 2
    if not events:
        sources = ", ".join("standard input" if name == "-" else name for name in args.files)
        print(f"intercom-sidecar send: no events to send in {sources}", file=sys.stderr)
        return 1 if problems else 2
    progress = Progress(len(events), sys.stderr)
    try:
        outcome = await _stream(args, events, progress)
    finally:
        progress.close()
    acks = outcome.acks
    # Acks come back in whatever order outcomes are known; show them in the order the events were read.
    position = {event.message_id: n for n, event in enumerate(events)}
    acks.sort(key=lambda ack: position.get(ack.message_id, len(position)))
    if acks:
        print_acks(acks, sys.stdout, as_json=not sys.stdout.isatty() if args.json is None else args.json)
    if outcome.error:
        print(f"intercom-sidecar send: {outcome.error}", file=sys.stderr)
        return 2
    failed = problems + sum(1 for ack in acks if event_pb2.Ack.Status.Name(ack.status) not in _OK)
    return 1 if failed or len(acks) < len(events) else 0


def _read_inputs(names: list[str]) -> tuple[list[event_pb2.Event], int]:
    """The events of every input, and how many problems were reported (one line each, on standard error)."""
    events: list[event_pb2.Event] = []
    problems = 0
    for name in names:
        for item in read_events(_read_text(name), "stdin" if name == "-" else name):
            if isinstance(item, str):
                print(f"intercom-sidecar send: skipped {item}", file=sys.stderr)
                problems += 1
            else:
                events.append(item)
    return events, problems


def _read_text(name: str) -> str:
    try:
        if name == "-":
            if sys.stdin.isatty():
                print("intercom-sidecar send: reading events from standard input (end with Ctrl-D)", file=sys.stderr)
            return sys.stdin.read()
        with open(name, encoding="utf-8") as stream:
            return stream.read()
    except OSError as exc:
        raise _InputError(
            f"cannot read {name}: {exc.strerror or exc}: give NDJSON or JSON files, or - for stdin"
        ) from None
    except UnicodeDecodeError as exc:
        where = "standard input" if name == "-" else name
        raise _InputError(f"cannot read {where}: not UTF-8 text (byte {exc.start}): save it as UTF-8 JSON") from None


async def _stream(args: argparse.Namespace, events: list[event_pb2.Event], progress: Progress) -> _Outcome:
    async def requests() -> AsyncIterator[event_pb2.Event]:
        for event in events:
            yield event
            progress.update(sent=1)

    target, timeout = args.target, args.timeout
    acks: list[event_pb2.Ack] = []
    metadata = (("x-ack-mode", args.ack_mode), *call_metadata(args))
    async with open_channel(args, target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        call = stub.Stream(requests(), metadata=metadata, timeout=timeout)
        try:
            async for ack in call:
                acks.append(ack)
                progress.update(acked=1)
        except grpc.aio.AioRpcError as exc:
            tls = bool(args.tls_ca or args.tls_cert)
            details = exc.details() or ""
            return _Outcome(acks, describe_rpc_error(target, exc.code(), details, timeout, len(acks), tls=tls))
    return _Outcome(acks)


def describe_rpc_error(
    target: str, code: grpc.StatusCode, details: str, timeout: float, acked: int, *, tls: bool = False
) -> str:
    """One line: what went wrong with the call to the sidecar, and what to do about it."""
    said = f"{code.name}: {details}" if details else code.name
    if code is grpc.StatusCode.UNAVAILABLE and not acked:
        # gRPC's details nest causes ("failed to connect to all addresses; ...: Connection refused"); the last says it
        cause = details.rsplit(": ", 1)[-1].strip(" []") or code.name
        if tls:
            return (
                f"cannot reach the sidecar at {target} over TLS (UNAVAILABLE: {cause}): is it running, and do "
                "--tls-ca, --tls-cert and --tls-key match what it expects?"
            )
        return (
            f"cannot reach the sidecar at {target} ({cause}): is it running? (start it with `make run`; see --target)"
        )
    if code is grpc.StatusCode.UNAVAILABLE:
        return f"the sidecar at {target} ended the stream after {acked} acks ({said}): send the other events again"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"not every event was acknowledged within {timeout:g} s by the sidecar at {target}: "
            "raise --timeout, or see `intercom-sidecar check` and the sidecar's logs"
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"the sidecar at {target} refused a message as too large ({said}): send smaller events"
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"the sidecar at {target} refused the call ({said}): check the credentials it expects"
    return f"the call to the sidecar at {target} failed ({said})"
