"""The sidecar's tracer: the SDK's TracerProvider with a lighter span, for the spans made on every event.

The SDK's `Span` takes a lock per operation, wraps its attributes in a locked `BoundedAttributes`, keeps events
and links in locked bounded lists, asks the sampler through a `SamplingResult` per span, and at `end()` copies
itself into a new `ReadableSpan` for the processors; `start_as_current_span` stacks two generator context managers.
Per event (the event span and its validation child) that is most of what recording costs. `LeanSpan` keeps the
same contract with less: it *is* a `ReadableSpan` (exporters and processors see it as they see the SDK's), it is
handed to `on_end` itself (it is immutable once ended), and its attributes are a plain dict, cleaned and bounded
by the same rules and limits (`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, the
event and link limits: `SpanLimits`). Sampling is the provider's sampler (`OTEL_TRACES_SAMPLER` and its argument);
for the default (parent-based always-on) the decision is taken inline, with the same outcome. Processors get
`on_start`, `_on_ending` and `on_end` as from the SDK (only the hooks a processor implements are called: the
provider works out which when a processor is added).

With the default id generator and sampler, two shortcuts: a child of one of the tracer's own spans copies its
parent's trace id, flags and trace state (what the sampler would decide); `record_child` hands processors a child
that started earlier and ends now in one step, as `start_span(...).end()` would (intake times validation so);
with the sidecar's encoding processor alone, the first such child of a span still open is kept on it and handed
over with it (`LeanSpan._folded`), so both are encoded together. `LeanSpan._plain` says a span still has the
common shape, so the encoder (`telemetry/otlp.py`) tests one flag.

One lock, shared by all spans, makes `end()` happen once even if two threads race to it; everything else relies
on a span being used by one thread at a time, as the sidecar does (each event's spans live on the event loop).
What the SDK span has and this one does not: the SDK's own span metrics (`OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`)
and tracer configurators.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.span import DEFAULT_TRACE_STATE as _DEFAULT_TRACE_STATE
from opentelemetry.util import types

__all__ = ["UNSET_STATUS", "LeanSpan", "LeanTracer", "LeanTracerProvider"]

_log = logging.getLogger(__name__)

_END_LOCK = threading.Lock()
UNSET_STATUS = Status(StatusCode.UNSET)
"""The status of every LeanSpan whose status was never set (one object: encoders can test it by identity)."""
_FLAGS = {
    (sampled, random_ids): TraceFlags(sampled * TraceFlags.SAMPLED | random_ids * TraceFlags.RANDOM_TRACE_ID)
    for sampled in (False, True)
    for random_ids in (False, True)
}
_SIMPLE = (str, bool, int, float)
_PARENT_BASED_ALWAYS_ON = ParentBased(ALWAYS_ON).get_description()  # type: ignore[no-untyped-call]
_ALWAYS_OFF = ALWAYS_OFF.get_description()
_INLINE_ON = "on"
_INLINE_OFF = "off"
_SAMPLED = int(TraceFlags.SAMPLED)
_RANDOM_TRACE_ID = int(TraceFlags.RANDOM_TRACE_ID)
_TRACE_ID_MAX = 2**128 - 1
_SPAN_ID_MAX = 2**64 - 1
_new_tuple = tuple.__new__
_new_object = object.__new__
_INTERNAL = SpanKind.INTERNAL


def _runtime_context_getter() -> Callable[[], context_api.Context | None]:
    """The current context's getter: with the API's default runtime context (contextvars), its ContextVar's own
    `get` (a C call instead of two Python ones); else `context.get_current`."""
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar):
        return variable.get
    return context_api.get_current


_current_context = _runtime_context_getter()


class LeanTracerProvider(TracerProvider):
    """A TracerProvider whose tracers make `LeanSpan`s. Everything else (processors, sampler, resource, shutdown,
    force_flush, OTEL_SDK_DISABLED) is the SDK's."""

    def __init__(
        self,
        sampler: Sampler | None = None,
        resource: Resource | None = None,
        shutdown_on_exit: bool = True,
        id_generator: IdGenerator | None = None,
        span_limits: SpanLimits | None = None,
    ) -> None:
        self._processors = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
        self._hooks = _Hooks(())
        self._limits = span_limits or SpanLimits()
        super().__init__(
            sampler=sampler,
            resource=resource,
            shutdown_on_exit=shutdown_on_exit,
            active_span_processor=self._processors,
            id_generator=id_generator,
            span_limits=self._limits,
        )

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self._hooks = _Hooks(self._processors._span_processors)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes | None = None,
    ) -> trace_api.Tracer:
        tracer = super().get_tracer(instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        if isinstance(tracer, trace_api.NoOpTracer):  # OTEL_SDK_DISABLED
            return tracer
        scope = InstrumentationScope(instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        return LeanTracer(self, scope)


class LeanTracer(trace_api.Tracer):
    def __init__(self, provider: LeanTracerProvider, scope: InstrumentationScope) -> None:
        self._provider = provider
        self._scope = scope
        self._limits = provider._limits
        self._resource = provider.resource
        self._ids = provider.id_generator
        # The SDK's RandomIdGenerator draws from `random.getrandbits`; drawn here, a call less per id (a zero
        # draw, invalid as an id, goes back to the generator, which draws again).
        self._draw = random.getrandbits if type(provider.id_generator) is RandomIdGenerator else None
        self._random_ids = provider.id_generator.is_trace_id_random()
        self._sampler = provider.sampler
        # The two samplers the sidecar builds itself are decided inline, with the outcome theirs would have;
        # any other (OTEL_TRACES_SAMPLER=traceidratio, ...) is asked.
        description = provider.sampler.get_description()
        self._inline = {_PARENT_BASED_ALWAYS_ON: _INLINE_ON, _ALWAYS_OFF: _INLINE_OFF}.get(description)
        limits = self._limits
        # How many attributes a new span may be given as they are (plain values, none dropped or cut): none when
        # values have a length limit (each is then cleaned, as set_attributes does).
        self._plain_room = (
            -1
            if limits.max_span_attribute_length is not None
            else limits.max_span_attributes
            if limits.max_span_attributes is not None
            else sys.maxsize
        )

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        # The hot path of every event: tuple fields and dict lookups instead of the properties and helper calls
        # they stand for (SpanContext is a tuple: trace_id, span_id, is_remote, trace_flags, trace_state, is_valid).
        parent_span: Any
        if context is None:
            current = _current_context()
            parent_span = current.get(_SPAN_KEY) if current is not None else None
        else:
            parent_span = context.get(_SPAN_KEY)
        parent: SpanContext | None
        draw = self._draw
        if type(parent_span) is LeanSpan and self._inline is _INLINE_ON and draw is not None:
            # A child of one of our own spans, with the default sampler: the same trace, flags and trace state,
            # a new span id; valid as its parent is (a drawn span id is never 0 or too wide); sampled, and so
            # recorded, as its parent is.
            parent = parent_span._context
            span_context = _new_tuple(
                SpanContext, (parent[0], draw(64) or self._ids.generate_span_id(), False, *parent[3:])
            )
            if not parent[3] & _SAMPLED:
                return trace_api.NonRecordingSpan(span_context)
        else:
            parent = parent_span.get_span_context() if parent_span is not None else None
            if parent is not None and not parent[5]:
                parent = None
            if parent is None:
                trace_id = (draw(128) if draw else 0) or self._ids.generate_trace_id()
                random_ids = self._random_ids
            else:
                trace_id = parent[0]
                random_ids = bool(parent[3] & _RANDOM_TRACE_ID)
            if self._inline is _INLINE_ON:  # parent-based always-on: sampled unless the parent was not
                sampled = recording = parent is None or bool(parent[3] & _SAMPLED)
                trace_state = parent[4] if parent is not None else _DEFAULT_TRACE_STATE
            elif self._inline is _INLINE_OFF:  # no exporter: nothing recorded, a real trace id all the same
                sampled = recording = False
                trace_state = parent[4] if parent is not None else _DEFAULT_TRACE_STATE
            else:
                result = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
                sampled = result.decision.is_sampled()  # type: ignore[no-untyped-call]
                recording = result.decision.is_recording()  # type: ignore[no-untyped-call]
                trace_state = result.trace_state if result.trace_state is not None else _DEFAULT_TRACE_STATE
                attributes = result.attributes
            span_id = (draw(64) if draw else 0) or self._ids.generate_span_id()
            # SpanContext(...) without its __new__ (a Python call): the same tuple, validity worked out as it does.
            span_context = _new_tuple(
                SpanContext,
                (
                    trace_id,
                    span_id,
                    False,
                    _FLAGS[sampled, random_ids],
                    trace_state,
                    0 < trace_id <= _TRACE_ID_MAX and 0 < span_id <= _SPAN_ID_MAX,
                ),
            )
            if not recording:
                return trace_api.NonRecordingSpan(span_context)
        # LeanSpan's fields, set here rather than through an __init__ call (ReadableSpan's are set directly too).
        span = _new_object(LeanSpan)
        span._name = name
        span._context = span_context
        span._parent = parent
        span._resource = self._resource
        span._instrumentation_scope = self._scope
        span._limits = self._limits
        span._hooks = hooks = self._provider._hooks
        span._room = self._plain_room
        if (
            kind is not _INTERNAL
            or not record_exception
            or not set_status_on_exception
            or (parent is not None and parent[2])
            or span_context[4] is not _DEFAULT_TRACE_STATE
        ):  # all but the common case (LeanSpan's class attributes)
            span._kind = kind
            span._record_exception = record_exception
            span._set_status_on_exception = set_status_on_exception
            span._plain = (
                kind is _INTERNAL
                and not (parent is not None and parent[2])
                and (span_context[4] is _DEFAULT_TRACE_STATE)
            )
        if not attributes:
            span._attributes = {}
        elif len(attributes) <= self._plain_room:
            for key, value in attributes.items():  # kept as they are if set_attributes would keep them so
                if type(key) is not str or not key or type(value) not in _SIMPLE:
                    span._attributes = {}
                    span.set_attributes(attributes)
                    break
            else:  # plain values, none dropped or cut
                span._attributes = dict(attributes)
        else:
            span._attributes = {}
            span.set_attributes(attributes)
        if links:
            span._set_links(links)
        span._start_time = start_time if start_time is not None else time_ns()
        for on_start in hooks.starting:
            on_start(span, parent_context=context)
        return span

    def record_child(self, name: str, context: context_api.Context, start_time: int) -> None:
        """A child of the span in `context` that started at `start_time` and ends now, handed to the processors
        as `start_span(name, context, start_time=start_time).end()` would, in one step: for work timed on the
        event loop that cannot fail halfway (decoding, validation and mapping), where that pair would cost a
        tenth of an event's intake."""
        parent_span = context.get(_SPAN_KEY)
        draw = self._draw
        if type(parent_span) is not LeanSpan or self._inline is not _INLINE_ON or draw is None:
            self.start_span(name, context, start_time=start_time).end()
            return
        parent = parent_span._context
        if not parent[3] & _SAMPLED:  # parent-based: not sampled, so nothing to record
            return
        hooks = self._provider._hooks
        span_id = draw(64) or self._ids.generate_span_id()
        if (
            hooks.fold
            and parent_span._folded is None
            and parent_span._end_time is None
            and parent_span._hooks is hooks
            and parent[4] is _DEFAULT_TRACE_STATE
        ):  # kept on its open parent, and handed to the processor with it (encoded together, in one pack)
            parent_span._folded = (name, span_id, start_time, time_ns())
            return
        if (
            hooks.plain_child is not None
            and parent[4] is _DEFAULT_TRACE_STATE
            and hooks.plain_child(
                self._resource, self._scope, name, parent[0], span_id, parent[1], start_time, time_ns()
            )
        ):  # the only processor took it as it would take the span, without a span object made for it
            return
        span = _new_object(LeanSpan)
        span._name = name
        span._context = _new_tuple(SpanContext, (parent[0], span_id, False, *parent[3:]))
        span._parent = parent
        span._resource = self._resource
        span._instrumentation_scope = self._scope
        span._limits = self._limits
        span._hooks = hooks  # the fields in start_span's order: the spans' instance dicts share one key table
        span._room = self._plain_room
        if parent[4] is not _DEFAULT_TRACE_STATE:
            span._plain = False
        span._attributes = {}
        span._start_time = start_time
        for on_start in hooks.starting:
            on_start(span, parent_context=context)
        span._end_time = time_ns()  # nobody else has the span yet: no race to end it
        for on_ending in hooks.ending:
            on_ending(span)
        for on_end in hooks.ended:
            on_end(span)

    def start_as_current_span(  # type: ignore[override]  # a `with` block, not also a decorator
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _CurrentSpan:
        """As the SDK's, for a `with` block: the span is current inside it; an Exception escaping it is recorded
        (unless `record_exception` is False) and sets an ERROR status (unless `set_status_on_exception` is
        False). One small object instead of the SDK's two generator-based context managers."""
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        return _CurrentSpan(span, record_exception, set_status_on_exception, end_on_exit)


class _Hooks:
    """The span processors' hooks, each only where a processor implements it (SpanProcessor's are no-ops)."""

    __slots__ = ("ended", "ending", "fold", "only_end", "plain_child", "starting")

    def __init__(self, processors: Sequence[SpanProcessor]) -> None:
        base = SpanProcessor
        self.starting: tuple[Callable[..., None], ...] = tuple(
            processor.on_start for processor in processors if type(processor).on_start is not base.on_start
        )
        self.ending: tuple[Callable[[LeanSpan], None], ...] = tuple(
            processor._on_ending  # type: ignore[misc]  # an SDK Span expected; a ReadableSpan like it
            for processor in processors
            if type(processor)._on_ending is not base._on_ending
        )
        self.ended: tuple[Callable[[LeanSpan], None], ...] = tuple(
            processor.on_end for processor in processors if type(processor).on_end is not base.on_end
        )
        self.only_end = self.ended[0] if len(self.ended) == 1 and not self.ending else None
        """The one hook a span's end calls, when it is that simple (the sidecar's processor alone)."""
        self.plain_child: PlainChild | None = None
        """With one processor, which only needs on_end and can take a plain child's fields instead of the span
        (`QueueSpanProcessor` encoding for OTLP): that; `record_child` then makes no span object."""
        only = processors[0] if len(processors) == 1 else None
        if not self.starting and not self.ending and only is not None:
            self.plain_child = getattr(only, "take_plain_child", None)
        self.fold = self.plain_child is not None and getattr(only, "folds_children", False) is True
        """The one processor takes a span with a plain child folded into it (`LeanSpan._folded`) in its `on_end`."""


PlainChild = Callable[[Resource, InstrumentationScope, str, int, int, int, int, int], bool]
"""`take_plain_child(resource, scope, name, trace_id, span_id, parent_span_id, start, end)`: a finished child of
the common shape (internal, sampled, the default trace state, a local parent, nothing but a name and times), as
`on_end` would take it; False when it cannot, as when it does not encode spans (the caller then makes the span)."""


class _CurrentSpan:
    """What `trace.use_span(span, end_on_exit=...)` does, as a plain context manager."""

    __slots__ = ("_end_on_exit", "_record_exception", "_set_status_on_exception", "_span", "_token")

    def __init__(self, span: trace_api.Span, record_exception: bool, set_status: bool, end_on_exit: bool) -> None:
        self._span = span
        self._record_exception = record_exception
        self._set_status_on_exception = set_status
        self._end_on_exit = end_on_exit
        self._token: object = None

    def __enter__(self) -> trace_api.Span:
        self._token = context_api.attach(context_api.set_value(_SPAN_KEY, self._span))
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        context_api.detach(self._token)  # type: ignore[arg-type]
        try:
            if isinstance(error, Exception) and span.is_recording():
                if self._record_exception:
                    span.record_exception(error)
                if self._set_status_on_exception:
                    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        finally:
            if self._end_on_exit:
                span.end()


class LeanSpan(trace_api.Span, ReadableSpan):
    """A recording span that is its own ReadableSpan. Made by `LeanTracer` only."""

    # Fields most spans never change start as class attributes (a span that changes one gets its own).
    _kind = SpanKind.INTERNAL
    _plain = True
    """The span's shape is the common one, which encoders can write from constant runs of bytes: internal, the
    default trace state, a local parent or none, no events, links or dropped attributes, status unset."""
    _instrumentation_info = None
    _events: tuple[Event, ...] | list[Event] = ()
    _links: tuple[Link, ...] = ()
    _status = UNSET_STATUS
    _end_time: int | None = None
    _dropped_attributes = 0
    _dropped_events = 0
    _dropped_links = 0
    _record_exception = True
    _set_status_on_exception = True
    _folded: tuple[str, int, int, int] | None = None
    """A child `LeanTracer.record_child` recorded while this span was open, when the one processor takes such a
    child with its parent (`_Hooks.fold`: the sidecar's, encoding for OTLP): its name, span id, start and end
    times. It is handed over in this span's `on_end`, and the encoder writes both in one go (the validation span
    of each event, at a third of what it costs on its own). The child is plain: internal, sampled, this span's
    trace state (the default), no attributes."""

    # The rest are set by `LeanTracer.start_span` on an object it makes without calling __init__ (ReadableSpan's
    # would make a Resource when none is given, and the call itself costs on every event).
    _name: str
    _context: SpanContext
    _parent: SpanContext | None
    _resource: Resource
    _instrumentation_scope: InstrumentationScope
    _attributes: dict[str, types.AnyValue]
    _start_time: int | None
    _limits: SpanLimits
    _room: int
    """How many attributes the span may hold before set_attribute has limits to apply (-1: a value length
    limit, applied to every value)."""
    _hooks: _Hooks

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # ReadableSpan
    @property
    def attributes(self) -> types.Attributes:
        return MappingProxyType(self._attributes)

    @property
    def events(self) -> Sequence[Event]:
        return tuple(self._events)

    @property
    def links(self) -> Sequence[Link]:
        return self._links

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links

    # Span
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        """As the SDK's span (BoundedAttributes): values cleaned, strings cut to the length limit, a new key past
        the count limit pushes the oldest out (counted as dropped), an updated key moves to the end."""
        attributes = self._attributes
        if (
            type(value) in _SIMPLE
            and type(key) is str
            and key
            and self._end_time is None
            and key not in attributes
            and len(attributes) < self._room
        ):  # a new plain value with room for it: kept as it is
            attributes[key] = value
            return
        if self._end_time is not None:
            _log.warning("Setting attribute on ended span.")
            return
        limits = self._limits
        maximum = limits.max_span_attributes
        if maximum == 0:
            self._dropped_attributes += 1
            self._plain = False
            return
        if type(value) not in _SIMPLE or type(key) is not str or not key or limits.max_span_attribute_length:
            if not key or not isinstance(key, str):
                _log.warning("invalid key `%s`. must be non-empty string. Dropping key from attributes.", key)
                self._dropped_attributes += 1
                self._plain = False
                return
            value = _clean_attribute_value(value, limits.max_span_attribute_length)
        if key in attributes:
            del attributes[key]
        elif maximum is not None and len(attributes) >= maximum:
            _log.warning("Attributes dict is full. Dropping the oldest key-value pair from attributes.")
            del attributes[next(iter(attributes))]
            self._dropped_attributes += 1
            self._plain = False
        attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._end_time is not None:
            _log.warning("Calling add_event() on an ended span.")
            return
        limits = self._limits
        bounded = BoundedAttributes(
            limits.max_event_attributes, attributes, immutable=True, max_value_len=limits.max_attribute_length
        )
        self._plain = False
        events = self._events = [*self._events, Event(name, bounded, timestamp)]
        if limits.max_events is not None and len(events) > limits.max_events:
            del events[0]  # as BoundedList: the oldest goes
            self._dropped_events += 1

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is not None:
            _log.warning("Calling add_link() on an ended span.")
            return
        self._set_links((*self._links, Link(context, attributes)))

    def _set_links(self, links: Sequence[Link]) -> None:
        limits = self._limits
        kept = []
        for link in links:
            if not link or not _is_valid_link(link.context, link.attributes):
                continue
            link._attributes = BoundedAttributes(  # as the SDK's span does: bounded, immutable
                limits.max_link_attributes, link.attributes, immutable=True, max_value_len=limits.max_attribute_length
            )
            kept.append(link)
        if limits.max_links is not None and len(kept) > limits.max_links:
            self._dropped_links += len(kept) - limits.max_links
            kept = kept[len(kept) - limits.max_links :]
        self._links = tuple(kept)
        if kept or self._dropped_links:
            self._plain = False

    def update_name(self, name: str) -> None:
        if self._end_time is not None:
            _log.warning("Calling update_name() on an ended span.")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            _log.warning("Calling set_status() on an ended span.")
            return
        # As the SDK: an OK status is final, and UNSET never replaces anything.
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _log.warning("Description %s ignored. Use either `Status` or `(StatusCode, Description)`", description)
            self._status = status
            self._plain = False
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)
            self._plain = False

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event_attributes: dict[str, Any] = {
            EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with _END_LOCK:
            if self._end_time is not None:
                _log.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        hooks = self._hooks
        only_end = hooks.only_end
        if only_end is not None:
            only_end(self)
            return
        for on_ending in hooks.ending:
            on_ending(self)
        for on_end in hooks.ended:
            on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """As the SDK's span used as a context manager: record what escaped, then end."""
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)


def _is_valid_link(context: SpanContext, attributes: types.Attributes) -> bool:
    """As the SDK: a link is kept if its context is valid, or it carries attributes or a trace state."""
    return bool(context and (context.is_valid or attributes or context.trace_state))
