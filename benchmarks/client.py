"""The load generator, run in its own process: the same code drives the ceiling and the sidecar.

Events are built before the clock starts and the channel is connected (`channel_ready`) before it starts too.
Times are `time.perf_counter()` (CLOCK_MONOTONIC), comparable across processes on one machine. The client's own
garbage collector is off while it measures (`_channel`): a full collection over the prepared events stopped its
loop for tens of milliseconds, which showed up as ack latency of whatever server was under test.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from typing import Any

import grpc

from benchmarks.events import track_events
from benchmarks.processes import Commands, quiet_logging, serve_commands
from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc

__all__ = ["paced_stream", "run_client", "send_batches", "stream"]

_TIMEOUT = 120.0
_ACCEPTED = event_pb2.Ack.STATUS_ACCEPTED


def _status_name(status: int) -> str:
    return event_pb2.Ack.Status.Name(status).removeprefix("STATUS_")  # type: ignore[arg-type]


@asynccontextmanager
async def _channel(target: str) -> AsyncIterator[grpc.aio.Channel]:
    """A connected channel to `target`, with this process's garbage collector off until it is closed (what
    exists by then, the prepared events included, is frozen out of later collections)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            await channel.channel_ready()
            yield channel
    finally:
        gc.enable()
        gc.unfreeze()


def _result(started: float, statuses: Counter[str], offered: int) -> dict[str, Any]:
    finished = time.perf_counter()
    return {
        "events": sum(statuses.values()),
        "offered": offered,
        "started": started,
        "finished": finished,
        "statuses": dict(statuses),
    }


async def stream(target: str, count: int, users: int, tag: str, max_seconds: float) -> dict[str, Any]:
    """One Stream, events written as fast as gRPC takes them, until all are acked or `max_seconds` have passed.

    At the cap the call is cancelled: only acks received within `max_seconds` count (events gRPC had buffered
    but the server had not acked by then are left out, not waited for).
    """
    events = track_events(count, users, tag)
    statuses: Counter[str] = Counter()
    offered = 0

    async def requests(deadline: float) -> AsyncIterator[event_pb2.Event]:
        nonlocal offered
        for event in events:
            if time.perf_counter() > deadline:
                return
            offered += 1
            yield event

    async with _channel(target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        started = time.perf_counter()
        call = stub.Stream(requests(started + max_seconds), timeout=_TIMEOUT)
        capped = await _read_acks(call, max_seconds, lambda ack: statuses.update((_status_name(ack.status),)))
        return {**_result(started, statuses, offered), "capped": capped}


async def _read_acks(
    call: grpc.aio.StreamStreamCall[event_pb2.Event, event_pb2.Ack],
    max_seconds: float,
    on_ack: Callable[[event_pb2.Ack], None],
) -> bool:
    """Hand every ack to `on_ack` until the call ends (False) or `max_seconds` pass and it is cancelled (True)."""
    try:
        async with asyncio.timeout(max_seconds):
            async for ack in call:
                on_ack(ack)
    except TimeoutError:
        call.cancel()
        return True
    return False


async def send_batches(
    target: str, count: int, users: int, tag: str, batch: int, in_flight: int, max_seconds: float
) -> dict[str, Any]:
    """`Send` calls of `batch` events each, `in_flight` of them outstanding, none started after `max_seconds`."""
    events = track_events(count, users, tag)
    requests = [service_pb2.SendRequest(events=events[i : i + batch]) for i in range(0, count, batch)]
    pending: Iterator[service_pb2.SendRequest] = iter(requests)
    statuses: Counter[str] = Counter()
    offered = 0

    async def caller(stub: service_pb2_grpc.EventServiceAsyncStub, deadline: float) -> None:
        nonlocal offered
        for request in pending:
            offered += len(request.events)
            response = await stub.Send(request, timeout=_TIMEOUT)
            statuses.update(_status_name(ack.status) for ack in response.acks)
            if time.perf_counter() > deadline:
                return

    async with _channel(target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        started = time.perf_counter()
        await asyncio.gather(*(caller(stub, started + max_seconds) for _ in range(in_flight)))
        return _result(started, statuses, offered)


async def paced_stream(
    target: str, rate: float, seconds: float, users: int, tag: str, ack_wait_seconds: float
) -> dict[str, Any]:
    """One Stream offered `rate` events/s for `seconds`; ACCEPTED latency = ack received - event handed to gRPC.

    An event whose turn comes after `seconds` (gRPC flow control held the writer back) is not sent. Acks are
    awaited up to `ack_wait_seconds` after that; then the call is cancelled and the rest count as unacked.
    """
    count = int(rate * seconds)
    events = track_events(count, users, tag)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def paced() -> AsyncIterator[event_pb2.Event]:
        start = time.perf_counter()
        for number, event in enumerate(events):
            now = time.perf_counter()
            if now > start + seconds:
                return
            delay = start + number / rate - now
            if delay > 0:
                await asyncio.sleep(delay)
            sent[event.message_id] = time.perf_counter()
            yield event

    def on_ack(ack: event_pb2.Ack) -> None:
        now = time.perf_counter()
        statuses[_status_name(ack.status)] += 1
        if ack.status == _ACCEPTED:
            latencies.append(now - sent[ack.message_id])

    async with _channel(target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        started = time.perf_counter()
        call = stub.Stream(paced(), timeout=_TIMEOUT)
        capped = await _read_acks(call, seconds + ack_wait_seconds, on_ack)
        last_sent = max(sent.values(), default=started)
        result = _result(started, statuses, len(sent))
        return {**result, "capped": capped, "last_sent": last_sent, "latencies": latencies}


def run_client(conn: Connection) -> None:
    """Process entry point."""
    quiet_logging()
    commands: Commands = {"stream": stream, "send": send_batches, "paced": paced_stream, "stop": _nothing}
    asyncio.run(serve_commands(conn, {}, commands))


async def _nothing() -> None:
    return None
