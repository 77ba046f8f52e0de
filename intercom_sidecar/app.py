"""Wiring and lifecycle: tracer -> Intercom client -> delivery pipeline -> gRPC server -> Segment HTTP API ->
health SERVING.

`start()` builds and starts everything in that order; `stop()` undoes it in reverse, and is idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Sequence

import grpc
import httpx
from grpc_health.v1._async import HealthServicer
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span

from intercom_sidecar.admin.view import ViewSources, event_view_server
from intercom_sidecar.config import Config
from intercom_sidecar.config_values import split_listen
from intercom_sidecar.delivery.clock import Clock, SystemClock
from intercom_sidecar.delivery.pipeline import Outcome, Pipeline
from intercom_sidecar.delivery.ratelimit import RateLimiter
from intercom_sidecar.delivery.spool import Spool, SpooledEvent, SpoolError
from intercom_sidecar.delivery.spooler import OutcomeCallback, Spooler, make_spool
from intercom_sidecar.errors import ConfigError, InvalidEventError, ShuttingDownError
from intercom_sidecar.intake import Intake, record_outcome
from intercom_sidecar.intercom.client import IntercomClient
from intercom_sidecar.intercom.sender import IntercomSender
from intercom_sidecar.intercom.token_watch import watch_token
from intercom_sidecar.mapping import Skip, map_event
from intercom_sidecar.mapping.plan import Plan
from intercom_sidecar.model.from_proto import event_from_bytes
from intercom_sidecar.server.admin_http import AdminServer
from intercom_sidecar.server.auth import auth_interceptors
from intercom_sidecar.server.grpc_servers import (
    EVENT_SERVICE,
    LIVENESS_SERVICE,
    READINESS_SERVICES,
    api_server,
    bind,
    health_server,
    listening_on,
    set_health,
)
from intercom_sidecar.server.segment_http import SegmentHttpServer
from intercom_sidecar.server.servicer import EventServicer
from intercom_sidecar.server.tls import CertificateFiles, server_credentials
from intercom_sidecar.telemetry import names
from intercom_sidecar.telemetry.logs import register_secret
from intercom_sidecar.telemetry.metrics import SOURCE_RECOVERED, SOURCE_REPLAYED, Metrics, make_meter_provider
from intercom_sidecar.telemetry.pii import PiiPolicy
from intercom_sidecar.telemetry.prometheus import PrometheusReader, metrics_handler
from intercom_sidecar.telemetry.recent import RecentEvent, RecentEvents
from intercom_sidecar.telemetry.setup import make_tracer_provider, metric_readers
from intercom_sidecar.telemetry.spans import end_recovered_span, recovered_span

__all__ = ["EVENT_SERVICE", "LIVENESS_SERVICE", "App"]

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
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.config = config
        self._tracer_provider = tracer_provider or make_tracer_provider()
        self._tracer = self._tracer_provider.get_tracer(names.TRACER_NAME)
        self.metrics_reader = PrometheusReader()
        self._meter_provider = meter_provider or make_meter_provider(readers=(self.metrics_reader, *metric_readers()))
        self.metrics = Metrics(self._meter_provider)
        self._admin_server: AdminServer | None = None
        self.metrics_port = 0
        # Recorded only for the event view: with the view off, nobody would read it.
        self.recent = RecentEvents(config.server.admin_recent_events if config.server.admin_listen else 0)
        """The event view's record of the last events (INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS)."""
        self._view_server: AdminServer | None = None
        self.admin_port = 0
        """The event view's port actually bound, when INTERCOM_SIDECAR_ADMIN_LISTEN is set."""
        self._transport = transport
        self._clock = clock
        self._client: IntercomClient | None = None
        self._pipeline: Pipeline | None = None
        self._spooler: Spooler | None = None
        self._collecting: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._prefetching: asyncio.Task[None] | None = None
        self._token_check_seconds = token_check_seconds
        self._limits = config.limits
        self.spool: Spool | None = None
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self.health_port = 0
        """The health port actually bound, when INTERCOM_SIDECAR_HEALTH_LISTEN is set."""
        self._servicer: EventServicer | None = None
        self._segment: SegmentHttpServer | None = None
        self.segment_port = 0
        """The Segment HTTP API's port actually bound, when INTERCOM_SIDECAR_SEGMENT_LISTEN is set."""
        self._health = HealthServicer()
        self._adopting = False
        """True while replayed dead letters are planned (`_requeue`): the event view labels them so."""
        self._stopped = asyncio.Event()
        self._stopping = False
        self.port = 0
        """The gRPC port actually bound (useful with port 0)."""
        self.certificates: CertificateFiles | None = None
        """The TLS files of the API, when INTERCOM_SIDECAR_TLS_CERT_FILE is set."""

    @property
    def pipeline(self) -> Pipeline:
        assert self._pipeline is not None, "App.start() has not run"
        return self._pipeline

    async def start(self) -> None:
        config = self.config
        # Last line of defence: these never appear in a log line, an ack reason or a span, even if quoted.
        secrets = (
            config.intercom.token,
            config.mapping.identity_secret,
            config.server.auth_token,
            config.spool.dead_letter_key,
            *config.segment.write_keys,
        )
        for secret in secrets:
            if secret is not None:
                register_secret(secret.reveal())
        metrics = self.metrics
        self.rate_limiter = RateLimiter(self._clock or SystemClock(), on_wait=metrics.rate_limit_waited)
        tracer = self._tracer
        self._client = IntercomClient(
            config.intercom,
            transport=self._transport,
            limiter=self.rate_limiter,
            tracer=tracer,
            metrics=metrics,
            recent=self.recent,
        )
        self.sender = IntercomSender(self._client, config.intercom)
        self.spool = make_spool(config)
        try:
            recovery = await self.spool.open()
        except SpoolError as error:
            await self._client.aclose()
            raise ConfigError("INTERCOM_SIDECAR_SPOOL_DIR", str(error)) from None
        self._pipeline = Pipeline(
            self.sender, config.queue, config.retry, clock=self._clock, tracer=tracer, metrics=metrics
        )
        self._pipeline.on_pause_change = self._readiness_follows_pause
        self._pipeline.start()
        self._spooler = Spooler(self.spool, self._pipeline, metrics, window=config.queue.max_events, load=self._load)
        _observe(metrics, self.spool, self._spooler, self.sender)
        metrics.events_accepted(recovery.pending_events, source=SOURCE_RECOVERED)
        self._spooler.start(recovery.pending_events)
        if recovery.pending_events or recovery.moved_aside or recovery.quarantined:
            _log.warning(
                "Recovered %d pending events from the spool (%d dead letters kept; %d quarantined; files moved "
                "aside: %s).",
                recovery.pending_events,
                recovery.dead_letters,
                recovery.quarantined,
                ", ".join(f"`{path}`" for path in recovery.moved_aside) or "none",
            )
        self._collecting = asyncio.create_task(self._collect_replayed(), name="collect-replayed")
        self._prefetching = asyncio.create_task(self._prefetch(), name="prefetch-attributes")
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
            metrics=metrics,
            pii=PiiPolicy.from_env(os.environ),
            recent=self.recent,
        )

        self._servicer = EventServicer(intake, self._limits, identity_secret=config.mapping.identity_secret)
        self._server = server = api_server(
            self._servicer,
            self._health,
            max_message_bytes=config.server.max_message_bytes,
            reflection_on=config.server.reflection,
            interceptors=auth_interceptors(config.server),
        )
        try:
            credentials, self.certificates = server_credentials(config.server.tls)
            self.port = bind(server, config.server.listen, "INTERCOM_SIDECAR_LISTEN", credentials)
            if config.server.health_listen:
                self._health_server = health_server(self._health)
                self.health_port = bind(
                    self._health_server, config.server.health_listen, "INTERCOM_SIDECAR_HEALTH_LISTEN"
                )
        except ConfigError:
            await self.stop()
            raise
        await server.start()
        if self._health_server is not None:
            await self._health_server.start()
        if config.segment.listen:  # before readiness: a ready sidecar serves both APIs
            self._segment = SegmentHttpServer(intake, self._limits, config.segment)
            try:
                self.segment_port = await self._segment.start()
            except ConfigError:
                await self.stop()
                raise
        await set_health(self._health, (*READINESS_SERVICES, LIVENESS_SERVICE), serving=True)
        _log.info("Listening for gRPC on `%s`.", listening_on(config.server.listen, self.port))
        if self._health_server is not None:
            _log.info("Serving gRPC health on `%s`.", listening_on(config.server.health_listen, self.health_port))
        if self._segment is not None:
            where = listening_on(config.segment.listen, self.segment_port)
            _log.info("Serving the Segment HTTP API on `http://%s` (POST /v1/batch, /v1/track, ...).", where)
        if config.server.metrics_listen:
            self._admin_server = AdminServer()
            self._admin_server.route("/metrics", metrics_handler(self.metrics_reader))
            self.metrics_port = await self._serve_http(
                self._admin_server, config.server.metrics_listen, "INTERCOM_SIDECAR_METRICS_LISTEN"
            )
            where = listening_on(config.server.metrics_listen, self.metrics_port)
            _log.info("Serving Prometheus metrics on `%s/metrics`.", where)
        if config.server.admin_listen:
            sources = ViewSources(
                self.recent, self.spool, self._spooler, self._pipeline, self.rate_limiter, metrics, self._requeue
            )
            self._view_server = event_view_server(sources, metrics_handler(self.metrics_reader), config.server)
            self.admin_port = await self._serve_http(
                self._view_server, config.server.admin_listen, "INTERCOM_SIDECAR_ADMIN_LISTEN"
            )
            where = listening_on(config.server.admin_listen, self.admin_port)
            _log.info("Serving the live event view on `http://%s/` (and metrics at `/metrics`).", where)

    async def _serve_http(self, server: AdminServer, listen: str, key: str) -> int:
        """Start `server` on `listen` (HOST:PORT); the bound port. If it cannot listen, stop everything and raise a
        ConfigError naming `key`."""
        try:
            return await server.start(*split_listen(listen))
        except OSError as error:
            await self.stop()
            raise ConfigError(key, f"cannot listen on {listen}: {error.strerror}") from None

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
        for task in (self._collecting, self._watching, self._prefetching):
            if task is not None:
                task.cancel()
        # 2. New events get RETRY_LATER from here on (appends under way finish: those events are durable); the
        #    queue is delivered for up to the grace period, which also settles every ack that delivered-mode
        #    callers are waiting for. What is left stays in the spool for the next start.
        #    The Segment HTTP API answers new requests 503; those under way get their acks once the spooler
        #    closes, and are answered before the API stops listening.
        if self._segment is not None:
            self._segment.close()
        if self._spooler is not None:
            await self._spooler.close()
        if self._segment is not None:  # within the grace, like every other step of the stop
            await self._segment.stop(max(0.0, grace - (asyncio.get_running_loop().time() - started)))
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
        for admin in (self._admin_server, self._view_server):
            if admin is not None:
                await admin.stop()
        self._tracer_provider.shutdown()
        self._meter_provider.shutdown()
        self._stopped.set()

    def _readiness_follows_pause(self, reason: str | None) -> None:
        """Readiness is NOT_SERVING while delivery is paused (liveness is not: restarting would not help)."""
        if not self._stopping:
            asyncio.get_running_loop().create_task(set_health(self._health, READINESS_SERVICES, reason is None))

    async def _prefetch(self) -> None:
        try:
            await self.sender.prefetch()
        except Exception as error:  # not needed to start: the first write that needs the list asks again
            _log.warning("Could not list Intercom's data attributes at start: %s.", getattr(error, "reason", error))

    async def _collect_replayed(self) -> None:
        """Queue the dead letters an operator replays (`intercom-sidecar dlq replay`) while this sidecar runs."""
        assert self.spool is not None and self._spooler is not None
        while True:
            await asyncio.sleep(_REPLAY_POLL_SECONDS)
            try:
                while replayed := await self.spool.collect_replayed():  # in chunks: a big replay is read in parts
                    self._requeue(replayed)
            except ShuttingDownError:
                return
            except Exception:
                _log.exception("Could not queue replayed dead letters.")

    def _requeue(self, replayed: Sequence[SpooledEvent]) -> None:
        """Queue dead letters the spool moved back to pending (`dlq replay`, or the event view's Replay)."""
        if replayed:
            _log.info("Replaying %d dead letters.", len(replayed))
            self.metrics.events_accepted(len(replayed), source=SOURCE_REPLAYED)
            assert self._spooler is not None
            self._adopting = True  # planned now (room in the window): the event view shows them as replayed
            try:
                self._spooler.adopt(replayed)
            finally:
                self._adopting = False

    def _load(self, spooled: SpooledEvent) -> tuple[Plan, OutcomeCallback, Context] | None:
        """Plan an event the spool hands back (a backlog, a restart, a replay) with today's settings, under a span
        in its original trace; None when it is no longer valid, and so dead-lettered."""
        assert self.spool is not None
        source = "replayed" if self._adopting else "recovered"
        try:
            event, carrier = event_from_bytes(spooled.payload, now=spooled.accepted_at, limits=self._limits)
            plan = map_event(event, self.config.mapping)
        except InvalidEventError as error:
            plan = Skip(f"no longer valid under the current settings: {error}")
        if isinstance(plan, Skip):
            # Accepted earlier, so never dropped silently: an operator can read why, and replay it.
            self.spool.dead_letter(spooled.seq, reason=plan.reason, status=None, code="not_sent", attempts=0)
            self.metrics.event_dead_lettered()
            return None
        span, context = recovered_span(self._tracer, spooled.message_id, carrier)
        record = self.recent.begin(spooled.message_id, span, source=source)
        if record is not None:
            record.describe(event)
        return plan, functools.partial(_end_recovered, span, record), context

    async def wait_idle(self) -> None:
        """Until every event taken so far has an outcome (the backlog in the spool included)."""
        assert self._spooler is not None and self.spool is not None, "App.start() has not run"
        await self._spooler.wait_idle()
        await self.spool.sync()  # and the spool has recorded it

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _end_recovered(span: Span, record: RecentEvent | None, outcome: Outcome) -> None:
    record_outcome(record, outcome)
    end_recovered_span(span, outcome)


def _observe(metrics: Metrics, spool: Spool, spooler: Spooler, sender: IntercomSender) -> None:
    """What the metrics read when scraped: queue depth and age, skipped writes, dropped attributes, caches."""
    metrics.observe_queue(lambda: spool.depth()[0], lambda: spooler.oldest_age(time.time()))
    metrics.observe_skipped_writes("contact", lambda: sender.stats.unchanged_contacts_skipped)
    metrics.observe_skipped_writes("company", lambda: sender.stats.unchanged_companies_skipped)
    metrics.observe_dropped_attributes(lambda: sender.stats.attributes_dropped)
    for cache in ("contacts", "companies", "attachments"):
        metrics.observe_cache(
            cache, functools.partial(_lookups, sender, cache, 0), functools.partial(_lookups, sender, cache, 1)
        )


def _lookups(sender: IntercomSender, cache: str, which: int) -> int:
    return sender.cache_lookups()[cache][which]
