"""The sidecar's metrics: `Metrics`, one method per fact, over an OpenTelemetry `MeterProvider`.

Call sites stay one line (`metrics.event_delivered(accepted_at)`) and never touch OpenTelemetry. Label values
come only from small fixed sets (call types, ack statuses, outcomes, endpoint templates, HTTP statuses, cache
and model names); anything else becomes `unknown` or `other`, so no trait, property or id can reach a label.

Cost. Counters on the hot path are plain integers kept here and reported by observable (asynchronous)
counters when a reader collects: about 0.2 us per call, where the SDK's synchronous counter costs about 5 us
with attributes (at 10,000 events/s that is 5% of a core per counter). Histograms use the SDK directly.
Call every method from the event loop's thread.

The invariant of the delivery promise can be read from one scrape, per process:

    events.accepted = events.delivered + events.filtered + events.dead_lettered + queue.depth

`accepted` counts every event the sidecar took responsibility for: spooled at intake (ack ACCEPTED), filtered
at intake (ack FILTERED: it is accepted and settled at once), and the pending events found in the spool at
start (`recovered`) or replayed from the dead letters (`replayed`). `queue.depth` is the spool's pending count.
"""

from __future__ import annotations

import enum
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, NoOpMeterProvider, Observation
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource

from intercom_sidecar import __version__
from intercom_sidecar.telemetry import names

__all__ = [
    "CACHES",
    "DELIVERY_LATENCY_BUCKETS",
    "MODELS",
    "REQUEST_DURATION_BUCKETS",
    "SOURCE_INTAKE",
    "SOURCE_RECOVERED",
    "SOURCE_REPLAYED",
    "Metrics",
    "make_meter_provider",
]

SOURCE_INTAKE = "intake"
SOURCE_RECOVERED = "recovered"
SOURCE_REPLAYED = "replayed"
_SOURCES = frozenset({SOURCE_INTAKE, SOURCE_RECOVERED, SOURCE_REPLAYED})
CACHES = frozenset({"contacts", "companies", "attachments"})
MODELS = frozenset({"contact", "company"})
_CALL_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_ACK_STATUSES = frozenset({"accepted", "delivered", "duplicate", "filtered", "invalid", "rejected", "retry_later"})
_ERROR_TYPES = frozenset({"timeout", "connection_error", "protocol_error", "lead_not_found"})
"""Our own codes for failures without an HTTP status. Intercom's error codes are never labels."""

REQUEST_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Seconds; OpenTelemetry's advice for HTTP client durations."""
DELIVERY_LATENCY_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 300.0, 900.0, 3600.0, 10800.0),
)
"""Seconds from accepted to delivered: milliseconds when all is well, up to the 3 h retry budget."""

_Labels = tuple[str | int, ...]


def make_meter_provider(env: Mapping[str, str] | None = None, readers: Sequence[MetricReader] = ()) -> SdkMeterProvider:
    """A provider for the sidecar's own use (not installed globally), reading into `readers` (the Prometheus
    endpoint's reader, an exporting reader, or a test's `InMemoryMetricReader`). Shut it down at stop."""
    env = os.environ if env is None else env
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME", "intercom-sidecar"), "service.version": __version__}
    )
    return SdkMeterProvider(resource=resource, metric_readers=list(readers))


class _Tally:
    """Monotonic counts per label values, reported through an observable counter."""

    __slots__ = ("_counts", "_keys")

    def __init__(self, *keys: str) -> None:
        self._keys = keys
        self._counts: dict[_Labels, float] = {}

    def add(self, labels: _Labels = (), amount: float = 1) -> None:
        self._counts[labels] = self._counts.get(labels, 0) + amount

    @property
    def keys(self) -> tuple[str, ...]:
        return self._keys

    def values(self) -> list[float]:
        return list(self._counts.copy().values())

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # A copy, taken in one step: an exporting reader may call this from its own thread.
        return [Observation(value, _attributes(self._keys, labels)) for labels, value in self._counts.copy().items()]


class _Observed:
    """Counts or levels kept elsewhere, read through callbacks registered per label values."""

    __slots__ = ("_keys", "_readers")

    def __init__(self, *keys: str) -> None:
        self._keys = keys
        self._readers: dict[_Labels, Callable[[], float]] = {}

    def register(self, read: Callable[[], float], *labels: str) -> None:
        self._readers[labels] = read  # registering the same labels again replaces the callback

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read(), _attributes(self._keys, labels)) for labels, read in self._readers.copy().items()]


class Metrics:
    """The facade the rest of the code calls. `Metrics(make_meter_provider(readers=(reader,)))`.

    Without a provider (or with a no-op one) every method still works and nothing is reported.
    """

    def __init__(self, meter_provider: MeterProvider | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        meter = (meter_provider or NoOpMeterProvider()).get_meter(names.METER_NAME, __version__)
        self._received = _Tally(names.ATTR_CALL_TYPE, names.ATTR_ACK_STATUS)
        self._accepted = _Tally(names.METRIC_ATTR_SOURCE)
        self._delivered = _Tally()
        self._filtered = _Tally()
        self._dead_lettered = _Tally()
        self._deliveries = _Tally(names.METRIC_ATTR_OUTCOME)
        self._retries = _Tally(names.METRIC_ATTR_HTTP_STATUS, names.METRIC_ATTR_ERROR_TYPE)
        self._requests = _Tally(names.METRIC_ATTR_ENDPOINT, names.METRIC_ATTR_HTTP_STATUS, names.METRIC_ATTR_ERROR_TYPE)
        self._throttled = _Tally(names.METRIC_ATTR_ENDPOINT)
        self._rate_limit_wait = _Tally()
        self._metadata_dropped = _Tally()
        # Present from the first scrape, so the invariant can be checked before the first event.
        for tally in (self._delivered, self._filtered, self._dead_lettered):
            tally.add((), 0)
        self._accepted.add((SOURCE_INTAKE,), 0)
        self._queue_depth = _Observed()
        self._queue_age = _Observed()
        self._cache_lookups = _Observed(names.METRIC_ATTR_CACHE, names.METRIC_ATTR_CACHE_RESULT)
        self._skipped = _Observed(names.METRIC_ATTR_MODEL)
        self._attributes_dropped = _Observed()
        self._request_duration = meter.create_histogram(
            names.METRIC_INTERCOM_REQUEST_DURATION,
            unit="s",
            description="Duration of Intercom API calls (rate-limit waits excluded).",
            explicit_bucket_boundaries_advisory=REQUEST_DURATION_BUCKETS,
        )
        self._latency = meter.create_histogram(
            names.METRIC_DELIVERY_LATENCY,
            unit="s",
            description="Time from an event's acceptance to its delivery to Intercom.",
            explicit_bucket_boundaries_advisory=DELIVERY_LATENCY_BUCKETS,
        )
        counter = _CounterMaker(meter)
        counter(names.METRIC_EVENTS_RECEIVED, "{event}", "Events received, by call type and ack.", self._received)
        counter(names.METRIC_EVENTS_ACCEPTED, "{event}", "Events the sidecar took responsibility for.", self._accepted)
        counter(names.METRIC_EVENTS_DELIVERED, "{event}", "Accepted events Intercom took.", self._delivered)
        counter(names.METRIC_EVENTS_FILTERED, "{event}", "Accepted events intentionally not sent.", self._filtered)
        counter(names.METRIC_EVENTS_DEAD_LETTERED, "{event}", "Accepted events now dead letters.", self._dead_lettered)
        counter(names.METRIC_DELIVERIES, "{event}", "Finished delivery runs, by outcome.", self._deliveries)
        counter(names.METRIC_DELIVERY_RETRIES, "{retry}", "Failed delivery attempts that are retried.", self._retries)
        counter(names.METRIC_INTERCOM_REQUESTS, "{request}", "Intercom API calls, by endpoint, status.", self._requests)
        counter(names.METRIC_INTERCOM_THROTTLED, "{response}", "Intercom answers 429 (rate limited).", self._throttled)
        counter(names.METRIC_RATE_LIMIT_WAIT, "s", "Time spent waiting on the rate limit.", self._rate_limit_wait)
        counter(names.METRIC_CACHE_LOOKUPS, "{lookup}", "Cache lookups, by cache and hit or miss.", self._cache_lookups)
        counter(names.METRIC_WRITES_SKIPPED, "{write}", "Writes not sent because nothing changed.", self._skipped)
        counter(names.METRIC_ATTRIBUTES_DROPPED, "{attribute}", "Attribute values left out.", self._attributes_dropped)
        counter(names.METRIC_METADATA_KEYS_DROPPED, "{key}", "Track metadata keys left out.", self._metadata_dropped)
        meter.create_observable_gauge(
            names.METRIC_QUEUE_DEPTH, [self._queue_depth.observe], unit="{event}", description="Pending events."
        )
        meter.create_observable_gauge(
            names.METRIC_QUEUE_OLDEST_AGE,
            [self._queue_age.observe],
            unit="s",
            description="Age of the oldest pending event.",
        )

    # Intake -----------------------------------------------------------------------------------------------

    def event_received(self, call_type: str, ack_status: str | enum.Enum) -> None:
        """An event got its ack. `call_type` is `Event.type` (empty when it did not decode)."""
        status = ack_status.value if isinstance(ack_status, enum.Enum) else ack_status
        self._received.add(
            (
                call_type if call_type in _CALL_TYPES else "unknown",
                status if status in _ACK_STATUSES else "unknown",
            )
        )

    def events_accepted(self, count: int = 1, *, source: str = SOURCE_INTAKE) -> None:
        """Events are now pending in the spool: spooled at intake, found at start, or replayed."""
        self._accepted.add((source if source in _SOURCES else "unknown",), count)

    def event_filtered(self) -> None:
        """An event was filtered at intake: accepted and settled at once (counted in both)."""
        self._accepted.add((SOURCE_INTAKE,))
        self._filtered.add()

    def metadata_keys_dropped(self, count: int) -> None:
        """A track's properties had `count` more keys than Intercom's ten metadata keys."""
        if count > 0:
            self._metadata_dropped.add((), count)

    # Outcomes ---------------------------------------------------------------------------------------------

    def event_delivered(self, accepted_at: float) -> None:
        """Intercom took the event; `accepted_at` is its acceptance time (Unix seconds, `SpoolEntry.accepted_at`)."""
        self._delivered.add()
        self._deliveries.add(("delivered",))
        self._latency.record(max(0.0, self._clock() - accepted_at))

    def event_rejected(self) -> None:
        """Intercom refused the event, or its retries ran out: it is a dead letter now (counted as one)."""
        self._deliveries.add(("rejected",))
        self._dead_lettered.add()

    def event_abandoned(self) -> None:
        """Delivery stopped with the sidecar; the event stays pending for the next start."""
        self._deliveries.add(("abandoned",))

    def event_dead_lettered(self) -> None:
        """A pending event became a dead letter without a delivery (no longer valid under today's settings)."""
        self._dead_lettered.add()

    def delivery_retried(self, status: int | None, error_type: str = "") -> None:
        """A delivery attempt failed and will be retried: Intercom's HTTP status, or our code when none."""
        self._retries.add(_status_labels(status, error_type))

    # Intercom ---------------------------------------------------------------------------------------------

    def intercom_call(
        self, endpoint: str, status: int | None, duration_seconds: float, *, error_type: str = ""
    ) -> None:
        """One Intercom API call ended. `endpoint` is the route template (`PUT /contacts/{id}`); `status` is
        None when no answer came (then `error_type` is our code: `timeout`, `connection_error`, ...). 429s are
        also counted as throttled."""
        template = endpoint if endpoint in names.ENDPOINT_TEMPLATES else "other"
        labels = _status_labels(status, error_type)
        self._requests.add((template, *labels))
        if status == 429:
            self._throttled.add((template,))
        self._request_duration.record(max(0.0, duration_seconds), _attributes(self._requests.keys, (template, *labels)))

    def rate_limit_waited(self, seconds: float) -> None:
        """A request waited `seconds` for Intercom's rate limit (pacing, or a 429's reset)."""
        if seconds > 0 and math.isfinite(seconds):
            self._rate_limit_wait.add((), seconds)

    def totals(self) -> dict[str, float]:
        """The event counts of the delivery invariant, summed over labels (for the event view's status bar)."""
        return {
            "accepted": sum(self._accepted.values()),
            "delivered": sum(self._delivered.values()),
            "filtered": sum(self._filtered.values()),
            "dead_lettered": sum(self._dead_lettered.values()),
        }

    # Observed ---------------------------------------------------------------------------------------------

    def observe_queue(self, depth: Callable[[], int], oldest_age_seconds: Callable[[], float]) -> None:
        """Read the spool's pending count and the age of its oldest pending event at each collection."""
        self._queue_depth.register(depth)
        self._queue_age.register(oldest_age_seconds)

    def observe_cache(self, cache: str, hits: Callable[[], int], misses: Callable[[], int]) -> None:
        """Read a cache's lookup counts (`LruCache.hits`, `.misses`); `cache` is one of `CACHES`."""
        label = cache if cache in CACHES else "other"
        self._cache_lookups.register(hits, label, "hit")
        self._cache_lookups.register(misses, label, "miss")

    def observe_skipped_writes(self, model: str, skipped: Callable[[], int]) -> None:
        """Read the count of writes skipped as no-ops for `model` (`contact`, `company`)."""
        self._skipped.register(skipped, model if model in MODELS else "other")

    def observe_dropped_attributes(self, dropped: Callable[[], int]) -> None:
        """Read the count of custom attribute values left out (`DataAttributes.dropped`)."""
        self._attributes_dropped.register(dropped)


class _CounterMaker:
    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def __call__(self, name: str, unit: str, description: str, source: _Tally | _Observed) -> None:
        self._meter.create_observable_counter(name, [source.observe], unit=unit, description=description)


def _attributes(keys: tuple[str, ...], labels: _Labels) -> dict[str, str | int]:
    """Attributes of one series; an empty label (no error type on an answered call) is left out."""
    return {key: value for key, value in zip(keys, labels, strict=True) if value != ""}


def _status_labels(status: int | None, error_type: str) -> tuple[int | str, str]:
    """(HTTP status or "", error type or ""): the status when Intercom answered, else our own failure code."""
    if status is not None:
        return (status if 100 <= status <= 599 else 0), ""
    return "", error_type if error_type in _ERROR_TYPES else "other"
