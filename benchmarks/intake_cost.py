"""What the intake costs per event, in process: the `Send` and `Stream` servicer paths without gRPC's transport.

The bench's track events go through `EventServicer` (split, parse, validate, map, span, spool append, ack, the
response message) into an in-memory spool and a pipeline that is not started (delivery held). No sockets, no
threads, so the figures are repeatable:

    # process-time median per event (noisy machine: compare side by side)
    .venv/bin/python -m benchmarks.intake_cost send 5000
    # instructions per event (noise-free): (Collected --once - Collected --build-only) / N
    for run in --build-only --once; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
      .venv/bin/python -m benchmarks.intake_cost send 2000 $run 2>&1 | grep Collected; done

`send` runs batches of 100 events; `stream` one stream of N events. N stays under the delivery window (10,000).
`--sqlite` puts the durable spool (in a temporary directory) in place of the in-memory one, so its writer thread's
CPU counts too; `--in-flight K` keeps K `Send` calls in flight (the bench keeps 4), so appends share commits.
`--traced` records every span (always-on sampling) with the sidecar's tracer and span processor, each span encoded
for OTLP as it ends and the batches dropped where an exporter would post them: tracing's cost without the network.
The processor keeps every span until the run ends, then puts the requests together in the measuring thread
(`force_flush`): its export thread would do the same work, but when it ran, and how often it took the interpreter
lock, would vary from run to run (under callgrind, by up to 20,000 instructions per event).

`--window W` sets the delivery window (10,000): in the bench most events land beyond it, so their event spans end
at intake (deferred); `--window 200` with N=2000 does the same here. Tracing's cost per event is then (traced -
untraced) at the same N and window. Under callgrind, set PYTHONHASHSEED (say 0) for counts that repeat.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from benchmarks.events import track_events
from intercom_sidecar._generated.intercom_sidecar.v1 import service_pb2
from intercom_sidecar.config import LimitsConfig, MappingConfig, QueueConfig, RetryConfig
from intercom_sidecar.delivery.pipeline import Pipeline
from intercom_sidecar.delivery.spool import Spool
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.intake import Intake
from intercom_sidecar.runtime import tune_garbage_collector
from intercom_sidecar.server.servicer import EventServicer
from intercom_sidecar.telemetry.otlp import EncodedSpan, Home, encode_request
from intercom_sidecar.telemetry.processor import QueueSpanProcessor
from intercom_sidecar.telemetry.setup import make_tracer_provider
from intercom_sidecar.telemetry.tracer import LeanTracerProvider

_BATCH = 100


class _Context:
    """The little of `grpc.aio.ServicerContext` the servicer uses on the happy path."""

    def invocation_metadata(self) -> tuple[()]:
        return ()


class _Held:
    async def send(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()


class _DropEncoded:
    """Where the sidecar's OTLP exporters would post: the request is put together from the encoded spans, then
    dropped."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        raise AssertionError("spans are encoded as they end")

    def export_encoded(self, spans: Sequence[EncodedSpan | bytes], home: Home | None = None) -> SpanExportResult:
        encode_request(spans, home)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _provider(traced: bool) -> TracerProvider:
    if not traced:  # the sidecar's, with no exporter configured: spans with real ids, not recorded
        return make_tracer_provider({})
    provider = LeanTracerProvider(resource=Resource.create({"service.name": "intercom-sidecar"}))
    everything = 1 << 30  # queued until force_flush: the worker never wakes for a full batch
    processor = QueueSpanProcessor(
        _DropEncoded(),  # type: ignore[arg-type]
        max_queue_size=everything,
        max_export_batch_size=everything,
        schedule_delay_millis=3_600_000,
    )
    provider.add_span_processor(processor)
    return provider


async def _servicer(directory: Path | None, provider: TracerProvider, window: int) -> tuple[EventServicer, Spool]:
    spool: Spool
    if directory is None:
        spool = MemorySpool(max_events=1_000_000, max_bytes=1 << 40)
    else:
        spool = SqliteSpool(directory, max_events=1_000_000, max_bytes=1 << 40)
    await spool.open()
    pipeline = Pipeline(_Held(), QueueConfig(), RetryConfig())  # never started: held
    spooler = Spooler(spool, pipeline, window=window)
    intake = Intake(spooler, provider.get_tracer("intercom_sidecar"), MappingConfig(), durable=True)
    return EventServicer(intake, LimitsConfig()), spool


async def _send(servicer: EventServicer, requests: list[bytes], in_flight: int = 1) -> int:
    accepted = 0
    todo = iter(requests)

    async def sender() -> None:
        nonlocal accepted
        for request in todo:
            response = await servicer.Send(request, _Context())  # type: ignore[arg-type]
            accepted += sum(ack.status == ack.STATUS_ACCEPTED for ack in response.acks)
            response.SerializeToString()

    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return accepted


async def _stream(servicer: EventServicer, messages: list[bytes]) -> int:
    async def requests() -> AsyncIterator[bytes]:
        for message in messages:
            yield message
            await asyncio.sleep(0)  # one message per loop turn, as gRPC delivers them

    accepted = 0
    async for ack in servicer.Stream(requests(), _Context()):  # type: ignore[arg-type]
        accepted += ack.status == ack.STATUS_ACCEPTED
        ack.SerializeToString()
    return accepted


async def _run(
    kind: str,
    events: int,
    tag: str,
    *,
    build_only: bool = False,
    sqlite: bool = False,
    in_flight: int = 1,
    traced: bool = False,
    window: int = 10_000,
) -> float:
    """CPU seconds for `events` events through a fresh sidecar intake (with `sqlite`, the durable spool in a
    temporary directory: its writer thread's CPU counts too; with `traced`, every span recorded and encoded, and
    the span processor flushed before the clock stops)."""
    provider = _provider(traced)
    with tempfile.TemporaryDirectory(prefix="intake-cost-") as directory:
        servicer, spool = await _servicer(Path(directory) if sqlite else None, provider, window)
        try:
            spent = await _measure(servicer, kind, events, tag, build_only=build_only, in_flight=in_flight)
            flushing = time.process_time()
            provider.force_flush()
            return spent + time.process_time() - flushing
        finally:
            await spool.close()
            provider.shutdown()


async def _measure(
    servicer: EventServicer, kind: str, events: int, tag: str, *, build_only: bool, in_flight: int
) -> float:
    messages = [event.SerializeToString() for event in track_events(events, 1000, tag)]
    if build_only:  # the baseline of an instruction count: everything but the intake's work
        messages = []
        events = 0
    tune_garbage_collector()  # as `serve` does
    started = time.process_time()
    if kind == "send":
        requests = [
            service_pb2.SendRequest.FromString(b"").SerializeToString()
            + b"".join(b"\x0a" + _varint(len(m)) + m for m in messages[i : i + _BATCH])
            for i in range(0, len(messages), _BATCH)
        ]
        started = time.process_time()
        accepted = await _send(servicer, requests, in_flight)
    else:
        accepted = await _stream(servicer, messages)
    spent = time.process_time() - started
    assert accepted == events, f"{accepted} of {events} accepted"
    return spent


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def main(argv: Sequence[str]) -> int:
    kind, events = argv[0], int(argv[1])
    options: dict[str, Any] = {
        "sqlite": "--sqlite" in argv,
        "in_flight": int(argv[argv.index("--in-flight") + 1]) if "--in-flight" in argv else 1,
        "traced": "--traced" in argv,
        "window": int(argv[argv.index("--window") + 1]) if "--window" in argv else 10_000,
    }
    if "--once" in argv or "--build-only" in argv:
        asyncio.run(_run(kind, events, "once", build_only="--build-only" in argv, **options))
        return 0
    repeats = 15
    per_event = [asyncio.run(_run(kind, events, f"r{n}", **options)) / events * 1e6 for n in range(repeats)]
    median, least = statistics.median(per_event), min(per_event)
    spool = "sqlite spool" if options["sqlite"] else "memory spool"
    traced = ", every span recorded and encoded" if options["traced"] else ""
    print(
        f"{kind} ({spool}, {options['in_flight']} in flight, window {options['window']:,}{traced}): "
        f"median {median:.1f} µs CPU per event (min {least:.1f}, {repeats} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
