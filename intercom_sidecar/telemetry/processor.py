"""A lean batching span processor: what BatchSpanProcessor does, with less work per span on the event loop.

`on_end` appends the span to a bounded queue and returns; when the queue is full the span is dropped and counted
(`dropped_spans`, and one warning per export round that saw drops), so tracing never grows memory or blocks intake.
A worker thread exports in batches: as soon as a full batch is queued, else every schedule delay, whatever is
there. `force_flush` exports everything queued from the calling thread; `shutdown` stops the worker after a last
export of everything queued, then shuts the exporter down. Exports never overlap (one lock), and run with
instrumentation suppressed, as the SDK's processor does.

With an exporter that takes spans already encoded (`export_encoded`: the sidecar's OTLP exporters), each span is
encoded by `on_end` as it ends (`telemetry/otlp.py`; with the child folded into it, if any: one entry for both)
and the queue holds bytes: the export thread, which shares the interpreter lock with intake, then only joins them
into a request and posts it (its CPU in the bench's `Send` went from 13-16 to 5-6 µs per event), and span objects
are freed on the thread that made them.

The standard variables size it as they size the SDK's BatchSpanProcessor: `OTEL_BSP_MAX_QUEUE_SIZE` (2048),
`OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512, at most the queue size) and `OTEL_BSP_SCHEDULE_DELAY` (5000 ms).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags

from intercom_sidecar.telemetry.otlp import EncodedSpan, Home, encode_plain_child, encode_span_message
from intercom_sidecar.telemetry.tracer import LeanSpan

__all__ = ["EncodedSpanExporter", "QueueSpanProcessor"]

_log = logging.getLogger(__name__)

_DEFAULT_MAX_QUEUE_SIZE = 2048
_DEFAULT_MAX_BATCH = 512
_DEFAULT_SCHEDULE_DELAY_MILLIS = 5000.0
_SAMPLED = int(TraceFlags.SAMPLED)
_NO_HOME = object()
_SHUTDOWN_TIMEOUT_MILLIS = 5000.0
"""At shutdown, how long queued spans may take to export (the SDK's batch processor allows 30 s)."""


@runtime_checkable
class EncodedSpanExporter(Protocol):
    """An exporter that also takes spans already encoded: each an `otlp.EncodedSpan`, or the bytes alone of a
    span whose resource and scope are `home` (`otlp.encode_request` puts them together)."""

    def export_encoded(self, spans: Sequence[EncodedSpan | bytes], home: Home | None = None) -> SpanExportResult: ...


class QueueSpanProcessor(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int | None = None,
        max_export_batch_size: int | None = None,
        schedule_delay_millis: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._exporter = exporter
        self._max_queue_size = max_queue_size or _positive(env, "OTEL_BSP_MAX_QUEUE_SIZE", _DEFAULT_MAX_QUEUE_SIZE)
        batch = max_export_batch_size or _positive(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", _DEFAULT_MAX_BATCH)
        self._max_batch = min(batch, self._max_queue_size)
        delay = schedule_delay_millis or _positive(env, "OTEL_BSP_SCHEDULE_DELAY", _DEFAULT_SCHEDULE_DELAY_MILLIS)
        self._delay = delay / 1000
        self._queue: collections.deque[Any] = collections.deque()
        """Finished spans; with an `EncodedSpanExporter`, their Span messages: the bytes alone for a span of the
        home resource and scope, else an `EncodedSpan`."""
        self._encode: Callable[[ReadableSpan], bytes | None] | None = None
        if isinstance(exporter, EncodedSpanExporter):
            self._encode = encode_span_message
        self.folds_children = self._encode is not None
        """Spans are encoded here, so a LeanSpan may bring a child folded into it (`LeanSpan._folded`): both are
        written as one entry of the queue (and of a batch)."""
        self._home_resource: object = _NO_HOME
        self._home_scope: object = _NO_HOME
        """The resource and scope of the first span encoded here (in the sidecar, of every span: one tracer),
        whose spans are queued as bytes alone, without a tuple each to make, then take apart, then group."""
        self._home_lock = threading.Lock()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        self._shutdown = False
        self._shutdown_deadline: float | None = None
        self.dropped_spans = 0
        """Spans dropped because the queue was full (or ended after shutdown)."""
        self._dropped_reported = 0
        self._worker = self._start_worker()
        if hasattr(os, "register_at_fork"):  # a forked child gets an empty queue and its own worker
            reinit = weakref.WeakMethod(self._after_fork)

            def after_fork() -> None:
                method = reinit()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_fork)

    def on_end(self, span: ReadableSpan) -> None:
        # The `context` and `trace_flags` properties, without the calls (SpanContext is a tuple; 3: trace_flags).
        context = span._context
        if context is None or not context[3] & _SAMPLED:
            return
        queue = self._queue
        if len(queue) >= self._max_queue_size or self._shutdown:
            self.dropped_spans += 1 if getattr(span, "_folded", None) is None else 2
            return
        encode = self._encode
        if encode is None:
            queue.append(span)
        else:
            message = encode(span)  # None (logged) for a span that cannot be encoded
            if message is None:
                return
            scope: InstrumentationScope | None
            if type(span) is LeanSpan:
                resource, scope = span._resource, span._instrumentation_scope
            else:
                resource, scope = span.resource, span.instrumentation_scope
            if resource is self._home_resource and scope is self._home_scope:
                queue.append(message)
            else:
                self._append_with_pair(resource, scope, message)
        if len(queue) == self._max_batch:  # spans come one at a time: the queue passes here on its way up
            self._wake.set()

    def take_plain_child(
        self,
        resource: Resource,
        scope: InstrumentationScope,
        name: str,
        trace_id: int,
        span_id: int,
        parent_span_id: int,
        start: int,
        end: int,
    ) -> bool:
        """`on_end` of a sampled child of the common shape, given its fields (`LeanTracer.record_child`): queued
        encoded, without a span object. False, and nothing done, when spans are not encoded here."""
        if self._encode is None:
            return False
        queue = self._queue
        if len(queue) >= self._max_queue_size or self._shutdown:
            self.dropped_spans += 1
            return True
        message = encode_plain_child(name, trace_id, span_id, parent_span_id, start, end)
        if resource is self._home_resource and scope is self._home_scope:
            queue.append(message)
        else:
            self._append_with_pair(resource, scope, message)
        if len(queue) == self._max_batch:
            self._wake.set()
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; False when the deadline passed first (or after shutdown)."""
        if self._shutdown:
            return False
        return self._export(full_batches_only=False, deadline=time.monotonic() + timeout_millis / 1000)

    def shutdown(self, timeout_millis: float = _SHUTDOWN_TIMEOUT_MILLIS) -> None:
        """Export what is queued, for at most `timeout_millis` (a collector that is down must not hold up the
        sidecar's exit past its grace period), then shut the exporter down, which ends any retry it is in."""
        if self._shutdown:
            return
        self._shutdown_deadline = time.monotonic() + timeout_millis / 1000
        self._shutdown = True
        self._wake.set()
        self._worker.join(timeout_millis / 1000)
        self._exporter.shutdown()

    def _append_with_pair(self, resource: Resource, scope: InstrumentationScope | None, message: bytes) -> None:
        """Queue a span of another resource or scope than the home ones with its own; the first span queued makes
        its pair the home one."""
        self._queue.append((resource, scope or None, message))
        if self._home_scope is not _NO_HOME:
            return
        # Once. A span ending meanwhile on another thread sees the scope still unset (set last), so it is queued
        # with its pair: never as bytes that would be given the wrong one.
        with self._home_lock:
            if self._home_scope is _NO_HOME:
                self._home_resource = resource
                self._home_scope = scope

    def _home(self) -> Home | None:
        resource, scope = self._home_resource, self._home_scope
        if resource is _NO_HOME or scope is _NO_HOME:
            return None
        return resource, scope  # type: ignore[return-value]

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._work, name="intercom_sidecar-span-export", daemon=True)
        worker.start()
        return worker

    def _work(self) -> None:
        while not self._shutdown:
            woken = self._wake.wait(self._delay)
            self._wake.clear()
            if self._shutdown:
                break
            self._export(full_batches_only=woken)
        self._export(full_batches_only=False, deadline=self._shutdown_deadline)

    def _export(self, *, full_batches_only: bool, deadline: float | None = None) -> bool:
        """Export queued spans in batches (only full ones when asked); True when none is left behind."""
        queue = self._queue
        with self._export_lock:
            while queue and (len(queue) >= self._max_batch or not full_batches_only):
                if deadline is not None and time.monotonic() > deadline:
                    return False
                batch = [queue.popleft() for _ in range(min(self._max_batch, len(queue)))]
                token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
                try:
                    if self._encode is None:
                        self._exporter.export(batch)
                    else:
                        self._exporter.export_encoded(batch, self._home())  # type: ignore[attr-defined]
                except Exception:
                    _log.exception("The span exporter failed; %d spans lost.", len(batch))
                finally:
                    detach(token)
            self._report_drops()
        return True

    def _report_drops(self) -> None:
        dropped = self.dropped_spans
        if dropped > self._dropped_reported:
            _log.warning(
                "Dropped %d spans: the export queue (OTEL_BSP_MAX_QUEUE_SIZE=%d) was full.",
                dropped - self._dropped_reported,
                self._max_queue_size,
            )
            self._dropped_reported = dropped

    def _after_fork(self) -> None:
        self._queue.clear()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        if not self._shutdown:
            self._worker = self._start_worker()


def _positive(env: Mapping[str, str], key: str, default: float) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return int(default)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        _log.warning("`%s` must be a positive integer, got %r; using %d.", key, raw, int(default))
        return int(default)
    return value
