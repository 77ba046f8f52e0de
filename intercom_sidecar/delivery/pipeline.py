"""Delivery: the `Sender` protocol, and the pipeline that feeds it from the send queue with retries.

    submit() -> SendQueue (bounded, per-user FIFO) -> N workers -> deliver_with_retries
             -> AdaptiveConcurrency (AIMD limit <= N) -> Sender.send(plan)

Each submitted plan comes with a `done` callback that receives exactly one `Outcome`: `Delivered`,
`Rejected` (Intercom refused, or the retry budget ran out) or `Abandoned` (shutdown came first).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracer, Tracer

from intercom_sidecar.config import QueueConfig, RetryConfig
from intercom_sidecar.delivery.clock import Clock, SystemClock
from intercom_sidecar.delivery.concurrency import AdaptiveConcurrency
from intercom_sidecar.delivery.queue import SendQueue
from intercom_sidecar.delivery.retry import deliver_with_retries
from intercom_sidecar.errors import DeliveryError, InternalError, RetryableError, UnauthorizedError
from intercom_sidecar.mapping.plan import Plan
from intercom_sidecar.telemetry import recent
from intercom_sidecar.telemetry.metrics import Metrics
from intercom_sidecar.telemetry.spans import ATTR_RETRY_ATTEMPT, SPAN_ATTEMPT, SPAN_QUEUED

__all__ = ["Abandoned", "Deferred", "Delivered", "Outcome", "Pipeline", "Rejected", "Sender"]

_log = logging.getLogger(__name__)


class Sender(Protocol):
    """Carries out one plan against Intercom. Raises a classified `DeliveryError` when it cannot."""

    async def send(self, plan: Plan) -> None: ...


@dataclass(frozen=True, slots=True)
class Delivered:
    attempts: int


@dataclass(frozen=True, slots=True)
class Rejected:
    error: DeliveryError
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Abandoned:
    """Not delivered because the sidecar stopped first."""

    reason: str


@dataclass(frozen=True, slots=True)
class Deferred:
    """Durable in the spool behind a backlog, not queued in memory: delivered once the backlog reaches it, under a
    span of its own linked to the event's (given by the spooler, never by the pipeline)."""

    reason: str


Outcome = Delivered | Rejected | Abandoned


@dataclass(slots=True)
class _Job:
    plan: Plan
    done: Callable[[Outcome], None]
    failed_attempt: Callable[[str], None] | None = None
    trace: Context | None = None
    """The event span's context: the queued and attempt spans are its children."""
    queued_at_ns: int = 0


class Pipeline:
    """Owns the send queue and its workers. `start()`, then `submit()`; `shutdown()` drains, then stops."""

    def __init__(
        self,
        sender: Sender,
        queue: QueueConfig,
        retry: RetryConfig,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._sender = sender
        self._metrics = metrics or Metrics()
        self._tracer = tracer or NoOpTracer()
        self._retry = retry
        self._workers_wanted = queue.workers
        self._clock = clock or SystemClock()
        self.concurrency = AdaptiveConcurrency(queue.workers, initial=min(4, queue.workers), clock=self._clock.now)
        self._rng = rng or random.Random()
        self._queue: SendQueue[_Job] = SendQueue(queue.max_events, full_retry_after=queue.full_retry_after_seconds)
        self._workers: list[asyncio.Task[None]] = []
        self._running = asyncio.Event()
        self._running.set()
        self.pause_reason: str | None = None
        """Why delivery is paused (Intercom refuses the token), or None while it runs."""
        self.on_pause_change: Callable[[str | None], None] | None = None
        """Called with the reason when delivery pauses, and with None when it resumes."""

    @property
    def depth(self) -> int:
        """Events submitted and not yet finished."""
        return len(self._queue)

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"delivery-worker-{n}") for n in range(self._workers_wanted)
        ]

    def submit(
        self,
        user_key: str,
        plan: Plan,
        done: Callable[[Outcome], None],
        failed_attempt: Callable[[str], None] | None = None,
        *,
        bounded: bool = True,
        trace: Context | None = None,
    ) -> None:
        """Queue `plan` behind the earlier plans of `user_key`; `failed_attempt` hears of each retried failure.
        Raises QueueFullError (only when `bounded`) or ShuttingDownError."""
        self._queue.put(user_key, _Job(plan, done, failed_attempt, trace, time.time_ns()), bounded=bounded)

    def resume(self) -> None:
        """Deliver again after a pause (the token changed, or works again)."""
        if self.pause_reason is None:
            return
        self.pause_reason = None
        self._running.set()
        _log.warning("Delivery resumed.")
        if self.on_pause_change is not None:
            self.on_pause_change(None)

    def _pause(self, error: UnauthorizedError) -> None:
        if self.pause_reason is not None:
            return
        self.pause_reason = f"delivery is paused: {error.reason}"
        self._running.clear()
        _log.warning("Delivery paused: Intercom refuses the access token (HTTP %s).", error.status)
        if self.on_pause_change is not None:
            self.on_pause_change(self.pause_reason)

    async def wait_idle(self) -> None:
        """Return once every submitted plan has its outcome."""
        await self._queue.wait_idle()

    async def shutdown(self, grace_seconds: float) -> int:
        """Refuse new plans, deliver what is queued for up to `grace_seconds`, then stop the workers.

        Returns how many plans were abandoned (each one's `done` got `Abandoned`). Idempotent.
        """
        self._queue.close()
        if self.pause_reason is None:  # while paused nothing can be delivered: no point in waiting
            try:
                await asyncio.wait_for(self._queue.wait_idle(), timeout=grace_seconds)
            except TimeoutError:
                pass
        for worker in self._workers:
            worker.cancel()
        results = await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        # Workers are stopped first, so no in-flight item can release a queued one behind our back.
        abandoned = sum(1 for result in results if isinstance(result, _AbandonedInFlight))
        abandoned += self._abandon_queued()
        if abandoned:
            _log.warning("Stopped with %d events not delivered.", abandoned)
        return abandoned

    async def _work(self) -> None:
        while True:
            await self._running.wait()
            key, job = await self._queue.get()
            self._tracer.start_span(SPAN_QUEUED, context=job.trace, start_time=job.queued_at_ns).end()
            try:
                while isinstance(outcome := await self._deliver(job), UnauthorizedError):
                    # The token is refused: not this event's fault. Hold it (so its user's order is kept) and
                    # everyone else's until delivery resumes, then send it again.
                    self._pause(outcome)
                    await self._running.wait()
            except asyncio.CancelledError:
                _report(job, Abandoned("the sidecar stopped before delivery finished"))
                raise _AbandonedInFlight from None
            finally:
                self._queue.task_done(key)
            _report(job, outcome)

    async def _deliver(self, job: _Job) -> Outcome | UnauthorizedError:
        plan = job.plan
        retries = 0

        def count(attempt: int, error: RetryableError, delay: float) -> None:
            nonlocal retries
            retries = attempt
            self._metrics.delivery_retried(error.status, error.code)
            if job.failed_attempt is not None:
                job.failed_attempt(error.reason)

        async def attempt() -> None:
            # Adaptive concurrency bounds the attempts under way; the attempt span is current while the plan
            # runs, so each Intercom call is its child.
            async with self.concurrency.slot() as report:
                with self._tracer.start_as_current_span(
                    SPAN_ATTEMPT, context=job.trace, attributes={ATTR_RETRY_ATTEMPT: retries + 1}
                ):
                    marked = recent.attempt(job.trace, retries + 1)  # the event view links each call to this event
                    try:
                        await self._sender.send(plan)
                    except RetryableError:
                        report(True)  # 429, 408, 5xx, timeouts, refused connections: Intercom is under strain
                        raise
                    finally:
                        recent.end_attempt(marked)
                    report(False)

        try:
            attempts = await deliver_with_retries(
                attempt, policy=self._retry, clock=self._clock, rng=self._rng, on_retry=count
            )
        except UnauthorizedError as error:
            return error
        except DeliveryError as error:
            return Rejected(error, attempts=retries + 1)
        except Exception as error:  # a bug: keep the worker alive, reject the one event
            _log.exception("Unexpected error while delivering an event.")
            return Rejected(InternalError(f"internal error ({type(error).__name__})", code="internal"), retries + 1)
        return Delivered(attempts)

    def _abandon_queued(self) -> int:
        abandoned = 0
        while True:
            try:
                key, job = self._queue.get_nowait()
            except LookupError:
                return abandoned
            _report(job, Abandoned("the sidecar stopped before delivery started"))
            self._queue.task_done(key)
            abandoned += 1


def _report(job: _Job, outcome: Outcome) -> None:
    """Hand `outcome` to the job's callback; a failing callback is a bug, logged, and never stops a worker."""
    try:
        job.done(outcome)
    except Exception:
        _log.exception("Unexpected error while reporting a delivery outcome.")


class _AbandonedInFlight(Exception):
    """A worker was stopped in the middle of a delivery (its job's `done` already got `Abandoned`)."""
