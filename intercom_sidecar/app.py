"""Wiring and lifecycle: tracer -> Intercom client -> delivery pipeline -> gRPC server -> health SERVING.

`start()` builds and starts everything in that order; `stop()` undoes it in reverse, and is idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider

from intercom_sidecar._generated.intercom_sidecar.v1 import service_pb2, service_pb2_grpc
from intercom_sidecar.config import Config
from intercom_sidecar.delivery.clock import Clock, SystemClock
from intercom_sidecar.delivery.pipeline import Pipeline
from intercom_sidecar.delivery.ratelimit import RateLimiter
from intercom_sidecar.delivery.spool import Spool, SpooledEvent, SpoolError
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.errors import ConfigError, InvalidEventError, ShuttingDownError
from intercom_sidecar.intake import Intake
from intercom_sidecar.intercom.client import IntercomClient
from intercom_sidecar.intercom.sender import IntercomSender
from intercom_sidecar.intercom.token_watch import watch_token
from intercom_sidecar.mapping import Skip, map_event
from intercom_sidecar.model.from_proto import DecodeLimits, event_from_bytes
from intercom_sidecar.server.servicer import EventServicer
from intercom_sidecar.telemetry import names
from intercom_sidecar.telemetry.logs import register_secret
from intercom_sidecar.telemetry.setup import make_tracer_provider
from intercom_sidecar.telemetry.spans import end_recovered_span, recovered_span

__all__ = ["EVENT_SERVICE", "LIVENESS_SERVICE", "App"]

EVENT_SERVICE = service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name
"""Health service name for readiness: SERVING while events are taken (like the empty name "")."""
LIVENESS_SERVICE = "liveness"
"""Health service name for liveness: SERVING from start to stop, whatever Intercom's state."""

_log = logging.getLogger(__name__)

_REPLAY_POLL_SECONDS = 2.0
"""How often a running sidecar looks for dead letters an operator replayed."""
_MIN_RPC_GRACE_SECONDS = 1.0
"""Open calls get at least this long to write their last acks, even when draining used up the grace."""


class App:
    """The running sidecar. `async with App(config) as app:` starts it and stops it."""

    def __init__(
        self,
        config: Config,
        *,
        tracer_provider: TracerProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        token_check_seconds: float = 5.0,
    ) -> None:
        self.config = config
        self._tracer_provider = tracer_provider or make_tracer_provider()
        self._tracer = self._tracer_provider.get_tracer(names.TRACER_NAME)
        self._transport = transport
        self._clock = clock
        self._client: IntercomClient | None = None
        self._pipeline: Pipeline | None = None
        self._spooler: Spooler | None = None
        self._collecting: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._token_check_seconds = token_check_seconds
        self._limits = DecodeLimits(config.limits.max_event_bytes, config.limits.max_future_seconds)
        self.spool: Spool | None = None
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self.health_port = 0
        """The health port actually bound, when INTERCOM_SIDECAR_HEALTH_LISTEN is set."""
        self._servicer: EventServicer | None = None
        self._health = HealthServicer()
        self._stopped = asyncio.Event()
        self._stopping = False
        self.port = 0
        """The gRPC port actually bound (useful with port 0)."""

    @property
    def pipeline(self) -> Pipeline:
        assert self._pipeline is not None, "App.start() has not run"
        return self._pipeline

    async def start(self) -> None:
        config = self.config
        # Last line of defence: these never appear in a log line, an ack reason or a span, even if quoted.
        for secret in (config.intercom.token, config.mapping.identity_secret):
            if secret is not None:
                register_secret(secret.reveal())
        self.rate_limiter = RateLimiter(self._clock or SystemClock())
        tracer = self._tracer
        self._client = IntercomClient(
            config.intercom, transport=self._transport, limiter=self.rate_limiter, tracer=tracer
        )
        self.sender = IntercomSender(self._client, config.intercom)
        self.spool = _make_spool(config)
        try:
            recovery = await self.spool.open()
        except SpoolError as error:
            await self._client.aclose()
            raise ConfigError("INTERCOM_SIDECAR_SPOOL_DIR", str(error)) from None
        self._pipeline = Pipeline(self.sender, config.queue, config.retry, clock=self._clock, tracer=tracer)
        self._pipeline.on_pause_change = self._readiness_follows_pause
        self._pipeline.start()
        self._spooler = Spooler(self.spool, self._pipeline)
        self._recover(recovery.pending)
        if recovery.pending or recovery.moved_aside or recovery.quarantined:
            _log.warning(
                "Recovered %d pending events from the spool (%d dead letters kept; %d quarantined; files moved "
                "aside: %s).",
                len(recovery.pending),
                recovery.dead_letters,
                recovery.quarantined,
                ", ".join(f"`{path}`" for path in recovery.moved_aside) or "none",
            )
        self._collecting = asyncio.create_task(self._collect_replayed(), name="collect-replayed")
        self._watching = asyncio.create_task(
            watch_token(
                self._client,
                config.intercom,
                paused=lambda: self.pipeline.pause_reason is not None,
                resume=self.pipeline.resume,
                check_seconds=self._token_check_seconds,
            ),
            name="watch-token",
        )
        intake = Intake(
            self._spooler,
            tracer,
            config.mapping,
            durable=config.spool.kind == "sqlite",
        )

        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.server.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        self._servicer = EventServicer(intake, self._limits, identity_secret=config.mapping.identity_secret)
        service_pb2_grpc.add_EventServiceServicer_to_server(self._servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (EVENT_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        self._server = server
        try:
            self.port = _bind(server, config.server.listen, "INTERCOM_SIDECAR_LISTEN")
            if config.server.health_listen:
                # Probes come from the kubelet to the pod IP, while the API stays on localhost: health alone
                # is served on its own port.
                self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
                health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
                self.health_port = _bind(
                    self._health_server, config.server.health_listen, "INTERCOM_SIDECAR_HEALTH_LISTEN"
                )
        except ConfigError:
            self._collecting.cancel()
            self._watching.cancel()
            await self._pipeline.shutdown(0)
            await self.spool.close()
            await self._client.aclose()
            raise
        await server.start()
        if self._health_server is not None:
            await self._health_server.start()
        for service in ("", EVENT_SERVICE, LIVENESS_SERVICE):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        _log.info("Listening for gRPC on `%s`.", _address(config.server.listen, self.port))
        if self._health_server is not None:
            _log.info("Serving gRPC health on `%s`.", _address(config.server.health_listen, self.health_port))

    async def stop(self) -> None:
        """Stop in reverse order of start, within the configured grace period. Safe to call twice."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.config.server.shutdown_grace_seconds
        started = asyncio.get_running_loop().time()
        # 1. Readiness off at once, so the pod stops being sent new work.
        await self._health.enter_graceful_shutdown()
        for task in (self._collecting, self._watching):
            if task is not None:
                task.cancel()
        # 2. New events get RETRY_LATER from here on (appends under way finish: those events are durable); the
        #    queue is delivered for up to the grace period, which also settles every ack that delivered-mode
        #    callers are waiting for. What is left stays in the spool for the next start.
        if self._spooler is not None:
            await self._spooler.close()
        if self._pipeline is not None:
            await self._pipeline.shutdown(grace)
        # 3. Open streams write the acks they owe and end; the server stops with what is left of the grace.
        if self._servicer is not None:
            self._servicer.close_streams()
        if self._server is not None:
            remaining = grace - (asyncio.get_running_loop().time() - started)
            await self._server.stop(max(remaining, _MIN_RPC_GRACE_SECONDS))
        if self._health_server is not None:
            await self._health_server.stop(0)
        if self.spool is not None:
            await self.spool.close()
        if self._client is not None:
            await self._client.aclose()
        # 4. Last, flush telemetry so the spans of the final deliveries are exported.
        self._tracer_provider.shutdown()
        self._stopped.set()

    def _readiness_follows_pause(self, reason: str | None) -> None:
        """Readiness is NOT_SERVING while delivery is paused (liveness is not: restarting would not help)."""
        if self._stopping:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING if reason is None else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", EVENT_SERVICE):
            asyncio.get_running_loop().create_task(self._health.set(service, status))

    async def _collect_replayed(self) -> None:
        """Queue the dead letters an operator replays (`intercom-sidecar dlq replay`) while this sidecar runs."""
        assert self.spool is not None
        while True:
            await asyncio.sleep(_REPLAY_POLL_SECONDS)
            try:
                replayed = await self.spool.collect_replayed()
                if replayed:
                    _log.info("Replaying %d dead letters.", len(replayed))
                    self._recover(replayed)
            except ShuttingDownError:
                return
            except Exception:
                _log.exception("Could not queue replayed dead letters.")

    def _recover(self, pending: Sequence[SpooledEvent]) -> None:
        """Queue events the spool holds (at start, or replayed), in acceptance order, mapped with today's settings."""
        assert self.spool is not None and self._spooler is not None
        for spooled in pending:
            try:
                event, carrier = event_from_bytes(spooled.payload, now=spooled.accepted_at, limits=self._limits)
                plan = map_event(event, self.config.mapping)
            except InvalidEventError as error:
                plan = Skip(f"no longer valid under the current settings: {error}")
            if isinstance(plan, Skip):
                # Accepted earlier, so never dropped silently: an operator can read why, and replay it.
                self.spool.dead_letter(spooled.seq, reason=plan.reason, status=None, code="not_sent", attempts=0)
            else:
                span, context = recovered_span(self._tracer, spooled.message_id, carrier)
                self._spooler.recover(spooled, plan, functools.partial(end_recovered_span, span), context)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _make_spool(config: Config) -> Spool:
    if config.spool.kind == "memory":
        return MemorySpool(
            max_events=config.queue.max_events,
            max_bytes=config.spool.max_bytes,
            dedupe_window_seconds=config.spool.dedupe_window_seconds,
            full_retry_after_seconds=config.queue.full_retry_after_seconds,
        )
    return SqliteSpool(
        config.spool.directory,
        max_events=config.queue.max_events,
        max_bytes=config.spool.max_bytes,
        dedupe_window_seconds=config.spool.dedupe_window_seconds,
        full_retry_after_seconds=config.queue.full_retry_after_seconds,
    )


def _bind(server: grpc.aio.Server, address: str, key: str) -> int:
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(key, f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise ConfigError(key, f"cannot listen on {address}")
    return port


def _address(listen: str, port: int) -> str:
    return f"{listen.rsplit(':', 1)[0]}:{port}"
