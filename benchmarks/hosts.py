"""Process entry points for the sidecar under test and for the fake Intercom it delivers to."""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path

import grpc

from benchmarks.events import user_id
from benchmarks.processes import Commands, quiet_logging, serve_commands
from intercom_sidecar.app import App
from intercom_sidecar.config import (
    Config,
    IntercomConfig,
    QueueConfig,
    Secret,
    SegmentConfig,
    ServerConfig,
    SpoolConfig,
)
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.http_server import HttpServer, Request, Response
from intercom_sidecar.runtime import tune_garbage_collector
from intercom_sidecar.telemetry.setup import make_tracer_provider

Otlp = tuple[str, str]
"""Where a traced sidecar exports its spans: endpoint, and protocol (`grpc`, OTLP's default, or `http/protobuf`)."""

__all__ = ["SPOOL_MAX_EVENTS", "run_fake", "run_sidecar", "sidecar_config"]

SPOOL_MAX_EVENTS = 10_000_000
"""Large enough that no benchmark event is refused for a full spool (they would be acked RETRY_LATER)."""

_FAKE_CALLS_PER_WINDOW = 1_000_000_000
"""Intercom allows ≈ 1,666 calls per 10 s; the benchmark measures the sidecar, not the rate limit."""


def sidecar_config(fake_url: str, token: str, spool_dir: Path | None = None) -> Config:
    """The sidecar's defaults (64 workers, 64 connections, a delivery window of 10,000 events, the durable SQLite
    spool), except a loopback port 0, a big spool in a fresh directory, no Segment HTTP API, and a short grace at
    stop (each run starts a fresh sidecar; what is still queued then stays in a spool that is thrown away)."""
    return Config(
        intercom=IntercomConfig(token=Secret(token), base_url=fake_url),
        server=ServerConfig(listen="127.0.0.1:0", shutdown_grace_seconds=0.5),
        segment=SegmentConfig(listen=""),
        queue=QueueConfig(),
        spool=SpoolConfig(
            kind="sqlite",
            directory=spool_dir or Path(tempfile.gettempdir()) / "unused",
            max_events=SPOOL_MAX_EVENTS,
            max_bytes=4 * 1024**3,
        ),
    )


async def _serve_sidecar(conn: Connection, fake_url: str, token: str, profile: bool, otlp: Otlp | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as spool_dir:
        await _serve_app(conn, sidecar_config(fake_url, token, Path(spool_dir)), profile, otlp)


async def _serve_app(conn: Connection, config: Config, profile: bool, otlp: Otlp | None = None) -> None:
    # Traced: configured as a user would (OTEL_EXPORTER_OTLP_ENDPOINT, and OTEL_EXPORTER_OTLP_PROTOCOL unless it is
    # the default, gRPC): every span recorded, batched, encoded and sent by the exporter to a sink that keeps
    # nothing (in the fake Intercom's process).
    if otlp is not None:
        endpoint, protocol = otlp
        os.environ.update({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true"})
        if protocol != "grpc":
            os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    app = App(config, tracer_provider=make_tracer_provider(os.environ if otlp else {}))
    await app.start()
    tune_garbage_collector()  # as `intercom-sidecar serve` does
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()

    async def wait_idle() -> float:
        await app.wait_idle()
        return time.perf_counter()

    async def depth() -> int:
        return app.pipeline.depth

    async def stop() -> str | None:
        if profiler is not None:
            profiler.disable()
        await app.stop()
        return None if profiler is None else _top(profiler)

    commands: Commands = {"wait_idle": wait_idle, "depth": depth, "stop": stop}
    await serve_commands(conn, {"target": f"127.0.0.1:{app.port}"}, commands)


def _top(profiler: cProfile.Profile, lines: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def run_sidecar(conn: Connection, fake_url: str, token: str, profile: bool = False, otlp: Otlp | None = None) -> None:
    """Process entry point: the sidecar (`App`) delivering to the fake at `fake_url`; with `otlp` (endpoint,
    protocol: `grpc` or `http/protobuf`), its spans are exported there."""
    quiet_logging()
    asyncio.run(_serve_sidecar(conn, fake_url, token, profile, otlp))


async def _serve_fake(conn: Connection, users: int) -> None:
    fake = FakeIntercom(limit_per_window=_FAKE_CALLS_PER_WINDOW, ledger_max_entries=None)
    for number in range(users):
        fake.state.create_contact("user", {"external_id": user_id(number)})
    url = await fake.start("127.0.0.1", 0)
    sink = HttpServer(_accept_telemetry)  # where traced sidecars export their spans (OTLP over HTTP)
    sink_host, sink_port = await sink.start("127.0.0.1", 0)
    grpc_sink = grpc.aio.server()  # the same over gRPC, OTLP's default protocol (spans, and metrics once a minute)
    grpc_sink.add_generic_rpc_handlers([_otlp_grpc_handler(service) for service in _OTLP_GRPC_SERVICES])
    grpc_port = grpc_sink.add_insecure_port("127.0.0.1:0")
    await grpc_sink.start()

    async def reset_ledger() -> None:
        fake.ledger.reset()

    async def counts() -> dict[str, int]:
        """Calls received since the last reset, by `METHOD /resource STATUS`."""
        return dict(Counter(f"{entry.method} /{entry.path.split('/')[1]} {entry.status}" for entry in fake.ledger))

    async def set_latency(seconds: float) -> None:
        """Answer every API call after `seconds` (60 holds the sidecar's deliveries for a whole run)."""
        fake.faults.latency = seconds

    async def set_rate_limit(calls_per_window: int | None) -> None:
        """Intercom's limit per 10-second window (None: none to speak of), counted afresh from now."""
        fake.rate_limiter.limit = calls_per_window or _FAKE_CALLS_PER_WINDOW
        fake.rate_limiter.reset()

    async def stop() -> None:
        await sink.stop()
        await grpc_sink.stop(None)
        await fake.stop()

    commands: Commands = {
        "reset_ledger": reset_ledger,
        "counts": counts,
        "set_latency": set_latency,
        "set_rate_limit": set_rate_limit,
        "stop": stop,
    }
    ready = {
        "url": url,
        "token": fake.token,
        "otlp_http_endpoint": f"http://{sink_host}:{sink_port}",
        "otlp_grpc_endpoint": f"http://127.0.0.1:{grpc_port}",
    }
    await serve_commands(conn, ready, commands)


async def _accept_telemetry(request: Request) -> Response:
    """An OTLP/HTTP receiver that keeps nothing: `200` with an empty export response."""
    return Response(200, b"", [("content-type", "application/x-protobuf")])


_OTLP_GRPC_SERVICES = (
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
)


def _otlp_grpc_handler(service: str) -> grpc.GenericRpcHandler[bytes, bytes]:
    """An OTLP/gRPC receiver that keeps nothing: `Export` answered with an empty response, bytes never parsed."""

    async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return b""

    method = grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)
    return grpc.method_handlers_generic_handler(service, {"Export": method})


def run_fake(conn: Connection, users: int) -> None:
    """Process entry point: the fake Intercom, with `users` contacts already created and no rate limit to speak of."""
    quiet_logging()
    asyncio.run(_serve_fake(conn, users))
