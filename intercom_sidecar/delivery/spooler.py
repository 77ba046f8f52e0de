"""The spooler: an accepted event goes to the spool first, then into the pipeline; its outcome settles the spool.

    accept() ─▶ batch of this loop turn ─▶ spool.append (one group commit) ─┬▶ seq ─▶ pipeline.submit (window)
                                                                            ├▶ seq ─▶ stays in the spool (backlog)
                                                                            └▶ None: a duplicate
    backlog ─▶ spool.read_pending, in seq order, as the window empties ─▶ load() ─▶ pipeline.submit
    outcome: Delivered ─▶ spool.complete   Rejected ─▶ spool.dead_letter   Abandoned ─▶ stays pending (next start)

One append is in flight at a time; events accepted meanwhile wait and go together in the next one. At low load an
event is appended at once; under load the batches grow with the commit time, so durability costs one group commit
per batch, not one per event (a stream delivers its events one loop turn apart, so batching by turn is not enough).

The delivery window: at most `window` events are in memory (planned, queued, being delivered or waiting on a
retry); the spool holds the rest, within bounds of its own that can be far larger. So memory stays flat whatever
the backlog (an outage of hours, a restart on a full spool): once the window is full, newly accepted events stay
in the spool only (their ack says so), and the backlog is read back in seq order as the window empties, from
half empty on. Per-user FIFO holds across the two: the window always holds the oldest pending events, and while
there is a backlog every new event goes behind it.

Events the spool hands back (after a restart, replayed dead letters) are planned anew by `load`, which the app
provides (it knows the settings and the tracer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context

from intercom_sidecar.config import Config
from intercom_sidecar.delivery.dead_letter_payloads import DeadLetterKey, DeadLetterPayloads
from intercom_sidecar.delivery.pipeline import Abandoned, Deferred, Delivered, Outcome, Pipeline, Rejected
from intercom_sidecar.delivery.spool import Spool, SpooledEvent, SpoolEntry, SpoolError
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.errors import PausedError, QueueFullError, ShuttingDownError
from intercom_sidecar.mapping.plan import Plan
from intercom_sidecar.model.call_type import call_type_of
from intercom_sidecar.telemetry.metrics import Metrics

__all__ = ["Appended", "Load", "OutcomeCallback", "Spooler", "dead_letter_payloads", "make_spool"]

_log = logging.getLogger(__name__)

OutcomeCallback = Callable[[Outcome | Deferred], None]
Appended = Callable[[int | None, BaseException | None], None]
"""Told once how an accepted event's append ended: (its seq, None) once durable, (None, None) for a duplicate, or
(None, the error): QueueFullError (spool full), SpoolError or ShuttingDownError."""
Load = Callable[[SpooledEvent], "tuple[Plan, OutcomeCallback | None, Context | None] | None"]
"""A spooled event -> its plan, what to call with its outcome, and its trace context; None when it was settled
instead (no longer valid, say, and so dead-lettered)."""

_READ_CHUNK = 1000
"""Most events one `read_pending` takes: each read is one short transaction between group commits."""
_READ_RETRY_SECONDS = 1.0
_DEFERRED = "stored in the spool behind a backlog; delivered when the backlog reaches it"


@dataclass(slots=True)
class _Accepting:
    entry: SpoolEntry
    plan: Plan
    on_outcome: OutcomeCallback | None
    trace: Context | None
    appended: Appended


class Spooler:
    def __init__(
        self,
        spool: Spool,
        pipeline: Pipeline,
        metrics: Metrics | None = None,
        *,
        window: int = 10_000,
        load: Load | None = None,
    ) -> None:
        self._spool = spool
        self._pipeline = pipeline
        self._metrics = metrics or Metrics()
        self._window = window
        self._load = load
        self._pending_since: dict[int, float] = {}
        """When each seq in the window was accepted, oldest first (dicts keep insertion order)."""
        self._loaded_through = 0
        """The highest seq that went into the window: the backlog is what the spool holds above it."""
        self._backlog = False
        self._reading: asyncio.Task[None] | None = None
        self._batch: list[_Accepting] = []
        self._writing: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._closed = False

    @property
    def backlog(self) -> bool:
        """True while the spool holds pending events that are not in the window yet."""
        return self._backlog

    def start(self, pending: int) -> None:
        """Deliver the `pending` events the spool recovered (read in windows, oldest first)."""
        if pending:
            self._backlog = True
            self._read_soon()

    def accept(
        self,
        entry: SpoolEntry,
        plan: Plan,
        appended: Appended,
        on_outcome: OutcomeCallback | None = None,
        trace: Context | None = None,
    ) -> None:
        """Spool `entry` and queue `plan` for delivery. `appended(seq, error)` is called once the append has ended,
        never from within this call (see `Appended`): the seq once the write is durable, or None for a duplicate;
        or QueueFullError (spool full), SpoolError or ShuttingDownError. An event that goes behind a backlog hears
        `Deferred` (before `appended`) and no outcome after that: it is delivered later under a span of its own.
        A callback rather than a future: a future and its done callback per event cost more than the call."""
        if self._closed:
            raise ShuttingDownError()
        if self._pipeline.pause_reason is not None:
            raise PausedError(self._pipeline.pause_reason)
        self._batch.append(_Accepting(entry, plan, on_outcome, trace, appended))
        if self._writing is None and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def adopt(self, events: Sequence[SpooledEvent]) -> None:
        """Deliver events the spool put back into pending (replayed dead letters), above every pending event. They
        go into the window now when it has room for all of them and there is no backlog; otherwise they are read
        back with the backlog, in order, so that however many are replayed, memory stays within the window."""
        if not events:
            return
        if not self._backlog and self._pipeline.depth + len(events) <= self._window:
            for event in events:
                self._queue_loaded(event)
        else:
            self._backlog = True
            self._read_soon()

    async def close(self) -> None:
        """Take no more events; wait for the appends under way (their events are durable, so they are queued)."""
        self._closed = True
        if self._reading is not None:
            self._reading.cancel()
        while self._writing is not None or self._batch:
            if self._writing is None:
                self._flush()
            if self._writing is not None:
                await asyncio.gather(self._writing, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Until nothing is left to deliver: no backlog, no read under way, and the pipeline idle."""
        while True:
            await self._pipeline.wait_idle()
            if self._reading is not None:
                await asyncio.wait([self._reading])
            elif self._backlog and not self._closed:
                self._read_soon()
                if self._reading is None:  # cannot read now (closing); nothing more will come
                    return
            else:
                return

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest pending event has waited since it was accepted (0 when none). The window always
        holds the oldest pending events, so looking there is enough."""
        oldest = next(iter(self._pending_since.values()), None)
        return 0.0 if oldest is None else max(0.0, now - oldest)

    # Appending ----------------------------------------------------------------------------------------------

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
        if _fitting(batch, *self._spool.room()) < len(batch):
            batch = await self._answer_duplicates(batch)
        # The batch mixes callers: take the longest prefix that fits rather than refusing everyone. Both appends
        # start in this turn of the loop, so the rest is refused against the room the prefix leaves.
        fits = _fitting(batch, *self._spool.room())
        if 0 < fits < len(batch):
            await asyncio.gather(self._append(batch[:fits]), self._append(batch[fits:]))
        else:
            await self._append(batch)

    async def _answer_duplicates(self, batch: list[_Accepting]) -> list[_Accepting]:
        """Some of `batch` would be refused for room. Duplicates take none (a client resending a whole batch after
        RETRY_LATER, say): answer them now, so they do not crowd out the new events. What is left to append."""
        try:
            seen = await self._spool.seen([accepting.entry.message_id for accepting in batch])
        except Exception:  # the append that follows will say what is wrong
            return batch
        rest = []
        for accepting in batch:
            if accepting.entry.message_id in seen:
                _tell(accepting, None, None)
            else:
                rest.append(accepting)
        return rest

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
        accepted = len(seqs) - seqs.count(None)
        if accepted:
            self._metrics.events_accepted(accepted)  # once per batch, before any caller hears of its event
        for accepting, seq in zip(batch, seqs, strict=True):
            if seq is not None:
                if not self._backlog and self._pipeline.depth < self._window:
                    self._queue(seq, accepting.entry, accepting.plan, accepting.on_outcome, accepting.trace)
                else:  # behind a backlog (or starting one): it waits in the spool, and its plan is dropped
                    self._backlog = True
                    if accepting.on_outcome is not None:
                        accepting.on_outcome(Deferred(_DEFERRED))
            _tell(accepting, seq, None)
        self._read_soon()

    # The window and the backlog ---------------------------------------------------------------------------

    def _queue(
        self,
        seq: int,
        event: SpoolEntry | SpooledEvent,
        plan: Plan,
        on_outcome: OutcomeCallback | None,
        trace: Context | None,
    ) -> None:
        self._loaded_through = max(self._loaded_through, seq)
        try:
            settle = _Settle(self, seq, event.accepted_at, on_outcome)
            self._pipeline.submit(
                event.user_key,
                plan,
                settle,
                settle.record,
                bounded=False,  # the window is kept here
                trace=trace,
            )
        except ShuttingDownError:
            # Durable already: it stays pending in the spool and is delivered after the restart.
            _log.debug("Event `%s` stays in the spool for the next start.", event.message_id)
            return
        self._pending_since[seq] = event.accepted_at

    def _queue_loaded(self, event: SpooledEvent) -> None:
        """Queue an event the spool handed back, planned anew by `load`."""
        assert self._load is not None, "Spooler(load=...) is needed to deliver events read back from the spool"
        loaded = self._load(event)
        if loaded is None:
            self._loaded_through = max(self._loaded_through, event.seq)
        else:
            self._queue(event.seq, event, *loaded)

    def _read_soon(self) -> None:
        """Start reading the backlog once the window is half empty (unless a read is under way)."""
        if self._backlog and self._reading is None and not self._closed and self._pipeline.depth <= self._window // 2:
            self._reading = asyncio.get_running_loop().create_task(self._read_backlog(), name="read-backlog")
            self._reading.add_done_callback(self._read_done)

    async def _read_backlog(self) -> None:
        while self._backlog and not self._closed and self._pipeline.depth < self._window:
            limit = min(self._window - self._pipeline.depth, _READ_CHUNK)
            events = await self._spool.read_pending(self._loaded_through, limit)
            for event in events:
                if event.seq > self._loaded_through:
                    self._queue_loaded(event)
            if len(events) < limit:
                # All read. Appends that commit from here on settle after this read did (the writer settles in
                # commit order), so they see no backlog and queue their events themselves.
                self._backlog = False

    def _read_done(self, task: asyncio.Task[None]) -> None:
        self._reading = None
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            if not isinstance(error, ShuttingDownError):  # the events stay in the spool: try again in a while
                _log.error("Could not read the backlog from the spool: %s", error)
                asyncio.get_running_loop().call_later(_READ_RETRY_SECONDS, self._read_soon)
            return
        self._read_soon()  # outcomes that came while this read ran could not start the next one

    # Outcomes ---------------------------------------------------------------------------------------------

    def _settle(self, seq: int, accepted_at: float, outcome: Outcome, then: OutcomeCallback | None) -> None:
        """The spool's and the metrics' part of an outcome, then the caller's (its ack)."""
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
            if not self._closed:
                self._read_soon()


class _Settle:
    """What the pipeline calls for one queued event: with its outcome, and with each retried failure (`record`).

    One small object per event in the delivery window, where two closures took eight objects the garbage collector
    walks (two functions, six cells): the window holds up to 10,000 events, and every older-generation collection
    stops the event loop for as long as it takes to walk them."""

    __slots__ = ("_accepted_at", "_seq", "_spooler", "_then")

    def __init__(self, spooler: Spooler, seq: int, accepted_at: float, then: OutcomeCallback | None) -> None:
        self._spooler = spooler
        self._seq = seq
        self._accepted_at = accepted_at
        self._then = then

    def __call__(self, outcome: Outcome) -> None:
        self._spooler._settle(self._seq, self._accepted_at, outcome, self._then)

    def record(self, reason: str) -> None:
        self._spooler._spool.record_attempt(self._seq, reason)


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
        _tell(accepting, None, error)


def _tell(accepting: _Accepting, seq: int | None, error: BaseException | None) -> None:
    """Call the event's `appended`; a failing callback is logged and costs no other event its answer."""
    try:
        accepting.appended(seq, error)
    except Exception:
        _log.exception("Unexpected error while answering an append.")


def make_spool(config: Config) -> Spool:
    """The spool the configuration asks for: `sqlite` (durable) or `memory`."""
    if config.spool.kind == "memory":
        return MemorySpool(
            max_events=config.spool.max_events,
            max_bytes=config.spool.max_bytes,
            dedupe_window_seconds=config.spool.dedupe_window_seconds,
            full_retry_after_seconds=config.queue.full_retry_after_seconds,
        )
    return SqliteSpool(
        config.spool.directory,
        max_events=config.spool.max_events,
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
