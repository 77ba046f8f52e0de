"""The spooler: an accepted event goes to the spool first, then into the pipeline; its outcome settles the spool.

    accept() ─▶ batch of this loop turn ─▶ spool.append (one group commit) ─▶ seq ─▶ pipeline.submit
                                                                             └▶ None: a duplicate
    outcome: Delivered ─▶ spool.complete   Rejected ─▶ spool.dead_letter   Abandoned ─▶ stays pending (next start)

One append is in flight at a time; events accepted meanwhile wait and go together in the next one. At low load an
event is appended at once; under load the batches grow with the commit time, so durability costs one group commit
per batch, not one per event (a stream delivers its events one loop turn apart, so batching by turn is not enough).
Seqs come back in acceptance order and are submitted in that order, which keeps per-user FIFO. On start,
`recover` feeds what the spool still holds back into the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.context import Context

from intercom_sidecar.config import Config
from intercom_sidecar.delivery.dead_letter_payloads import DeadLetterKey, DeadLetterPayloads
from intercom_sidecar.delivery.pipeline import Abandoned, Delivered, Outcome, Pipeline, Rejected
from intercom_sidecar.delivery.spool import Spool, SpooledEvent, SpoolEntry, SpoolError
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.errors import PausedError, QueueFullError, ShuttingDownError
from intercom_sidecar.mapping.plan import Plan
from intercom_sidecar.model.call_type import call_type_of
from intercom_sidecar.telemetry.metrics import Metrics

__all__ = ["Spooler", "dead_letter_payloads", "make_spool"]

_log = logging.getLogger(__name__)

OutcomeCallback = Callable[[Outcome], None]


@dataclass(slots=True)
class _Accepting:
    entry: SpoolEntry
    plan: Plan
    on_outcome: OutcomeCallback | None
    trace: Context | None
    appended: asyncio.Future[int | None]


class Spooler:
    def __init__(self, spool: Spool, pipeline: Pipeline, metrics: Metrics | None = None) -> None:
        self._spool = spool
        self._pipeline = pipeline
        self._metrics = metrics or Metrics()
        self._pending_since: dict[int, float] = {}
        """When each queued seq was accepted, oldest first (dicts keep insertion order)."""
        self._batch: list[_Accepting] = []
        self._writing: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._closed = False

    def accept(
        self,
        entry: SpoolEntry,
        plan: Plan,
        on_outcome: OutcomeCallback | None = None,
        trace: Context | None = None,
    ) -> asyncio.Future[int | None]:
        """Spool `entry` and queue `plan` for delivery. The future gives the seq once the write is durable, or None
        for a duplicate; it fails with QueueFullError (spool full), SpoolError or ShuttingDownError."""
        if self._closed:
            raise ShuttingDownError()
        if self._pipeline.pause_reason is not None:
            raise PausedError(self._pipeline.pause_reason)
        loop = asyncio.get_running_loop()
        accepting = _Accepting(entry, plan, on_outcome, trace, loop.create_future())
        self._batch.append(accepting)
        if self._writing is None and not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return accepting.appended

    def recover(
        self,
        event: SpooledEvent,
        plan: Plan,
        on_outcome: OutcomeCallback | None = None,
        trace: Context | None = None,
    ) -> None:
        """Queue an event the spool held from before (a restart, or a replayed dead letter)."""
        self._pending_since[event.seq] = event.accepted_at
        # Already stored: the spool's own bounds were applied when it was accepted, so it is never refused here.
        self._pipeline.submit(
            event.user_key,
            plan,
            self._settler(event.seq, event.accepted_at, on_outcome),
            self._recorder(event.seq),
            bounded=False,
            trace=trace,
        )

    async def close(self) -> None:
        """Take no more events; wait for the appends under way (their events are durable, so they are queued)."""
        self._closed = True
        while self._writing is not None or self._batch:
            if self._writing is None:
                self._flush()
            if self._writing is not None:
                await asyncio.gather(self._writing, return_exceptions=True)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._writing is not None or not self._batch:
            return
        batch, self._batch = self._batch, []
        self._writing = asyncio.get_running_loop().create_task(self._write(batch))
        self._writing.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writing = None
        self._flush()

    async def _write(self, batch: list[_Accepting]) -> None:
        # The batch mixes callers: take the longest prefix that fits rather than refusing everyone. Both appends
        # start in this turn of the loop, so the rest is refused against the room the prefix leaves.
        fits = _fitting(batch, *self._spool.room())
        if 0 < fits < len(batch):
            await asyncio.gather(self._append(batch[:fits]), self._append(batch[fits:]))
        else:
            await self._append(batch)

    async def _append(self, batch: list[_Accepting]) -> None:
        try:
            seqs = await self._spool.append([accepting.entry for accepting in batch])
        except (QueueFullError, ShuttingDownError) as error:  # backpressure: each caller hears it in its ack
            _fail(batch, error)
            return
        except SpoolError as error:  # logged once per batch, not once per event; each ack says RETRY_LATER
            _log.error("The spool could not store %d events: %s", len(batch), error)
            _fail(batch, error)
            return
        except Exception as error:  # a bug: logged once with its traceback; each ack says REJECTED
            _log.exception("Unexpected error while spooling %d events.", len(batch))
            _fail(batch, error)
            return
        for accepting, seq in zip(batch, seqs, strict=True):
            if seq is not None:
                self._metrics.events_accepted()
                self._pending_since[seq] = accepting.entry.accepted_at
                self._queue(accepting, seq)
            accepting.appended.set_result(seq)

    def _queue(self, accepting: _Accepting, seq: int) -> None:
        try:
            self._pipeline.submit(
                accepting.entry.user_key,
                accepting.plan,
                self._settler(seq, accepting.entry.accepted_at, accepting.on_outcome),
                self._recorder(seq),
                trace=accepting.trace,
            )
        except ShuttingDownError:
            # Durable already: it stays pending in the spool and is delivered after the restart.
            _log.debug("Event `%s` stays in the spool for the next start.", accepting.entry.message_id)

    def _recorder(self, seq: int) -> Callable[[str], None]:
        def record(reason: str) -> None:
            self._spool.record_attempt(seq, reason)

        return record

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest event still queued here has waited since it was accepted (0 when none)."""
        oldest = next(iter(self._pending_since.values()), None)
        return 0.0 if oldest is None else max(0.0, now - oldest)

    def _settler(self, seq: int, accepted_at: float, then: OutcomeCallback | None) -> OutcomeCallback:
        def settle(outcome: Outcome) -> None:
            try:
                self._pending_since.pop(seq, None)
                if isinstance(outcome, Delivered):
                    self._spool.complete([seq])
                    self._metrics.event_delivered(accepted_at)
                elif isinstance(outcome, Rejected):
                    error = outcome.error
                    self._spool.dead_letter(
                        seq, reason=error.reason, status=error.status, code=error.code, attempts=outcome.attempts
                    )
                    self._metrics.event_rejected()
                elif isinstance(outcome, Abandoned):
                    self._metrics.event_abandoned()  # still pending in the spool: delivered after the next start
            finally:
                if then is not None:  # the caller's ack does not depend on the bookkeeping
                    then(outcome)

        return settle


def _fitting(batch: list[_Accepting], events: int, size: int) -> int:
    """How many of the first entries of `batch` fit in `events` more events and `size` more bytes."""
    count = 0
    for accepting in batch[: max(events, 0)]:
        size -= len(accepting.entry.payload)
        if size < 0:
            break
        count += 1
    return count


def _fail(batch: list[_Accepting], error: BaseException) -> None:
    for accepting in batch:
        accepting.appended.set_exception(error)
        accepting.appended.exception()  # the caller may be gone; a refused event is not a bug


def make_spool(config: Config) -> Spool:
    """The spool the configuration asks for: `sqlite` (durable) or `memory`."""
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
        payloads=dead_letter_payloads(config),
    )


def dead_letter_payloads(config: Config) -> DeadLetterPayloads:
    """What dead letters keep of their events, as `INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS` says."""
    key = config.spool.dead_letter_key
    return DeadLetterPayloads(
        config.spool.dead_letter_payloads,
        None if key is None else DeadLetterKey.from_base64(key.reveal()),
        describe=call_type_of,
    )
