"""`Metrics`: each fact lands on its instrument with its labels; labels never carry event data; the invariant
accepted = delivered + filtered + dead_lettered + queued holds through a scripted run, read from a scrape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader

from intercom_sidecar.config import QueueConfig, RetryConfig
from intercom_sidecar.delivery.pipeline import Abandoned, Delivered, Outcome, Pipeline, Rejected
from intercom_sidecar.delivery.spool import SpoolEntry
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.errors import PermanentError
from intercom_sidecar.mapping.plan import ContactRef, CreateDataEvent, Plan
from intercom_sidecar.model.acks import AckStatus
from intercom_sidecar.telemetry import names
from intercom_sidecar.telemetry.metrics import DELIVERY_LATENCY_BUCKETS, Metrics, make_meter_provider
from intercom_sidecar.telemetry.prometheus import PrometheusReader, render_text
from tests.conftest import FakeClock, appended_future

pytestmark = pytest.mark.timeout(10)

PACKAGE = Path(__file__).resolve().parents[3] / "intercom_sidecar"
NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(reader: InMemoryMetricReader, clock: Clock) -> Metrics:
    return Metrics(make_meter_provider({}, readers=(reader,)), clock=clock)


def collected(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Metric name -> its data, from one collection."""
    data = reader.get_metrics_data()
    assert data is not None
    return {metric.name: metric for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics}


def values(reader: InMemoryMetricReader, name: str) -> dict[frozenset[tuple[str, Any]], float]:
    """{attributes: value} of the counter or gauge `name`."""
    metric = collected(reader).get(name)
    if metric is None:
        return {}
    return {frozenset((point.attributes or {}).items()): point.value for point in metric.data.data_points}


def one(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


# Each instrument ------------------------------------------------------------------------------------------


def test_events_received_by_call_type_and_ack_status(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.event_received("track", AckStatus.ACCEPTED)
    metrics.event_received("track", "accepted")
    metrics.event_received("identify", AckStatus.INVALID)
    metrics.event_received("", AckStatus.INVALID)  # did not decode

    assert values(reader, names.METRIC_EVENTS_RECEIVED) == {
        one(**{"segment.type": "track", "intercom_sidecar.ack.status": "accepted"}): 2,
        one(**{"segment.type": "identify", "intercom_sidecar.ack.status": "invalid"}): 1,
        one(**{"segment.type": "unknown", "intercom_sidecar.ack.status": "invalid"}): 1,
    }


def test_accepted_by_source_and_filtered_counts_as_accepted(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.events_accepted()
    metrics.events_accepted(3, source="recovered")
    metrics.events_accepted(2, source="replayed")
    metrics.event_filtered()

    source = "intercom_sidecar.event.source"
    assert values(reader, names.METRIC_EVENTS_ACCEPTED) == {
        one(**{source: "intake"}): 2,
        one(**{source: "recovered"}): 3,
        one(**{source: "replayed"}): 2,
    }
    assert values(reader, names.METRIC_EVENTS_FILTERED) == {one(): 1}


def test_invariant_counters_are_present_from_the_start(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    for name in (names.METRIC_EVENTS_DELIVERED, names.METRIC_EVENTS_FILTERED, names.METRIC_EVENTS_DEAD_LETTERED):
        assert values(reader, name) == {one(): 0}
    assert values(reader, names.METRIC_EVENTS_ACCEPTED) == {one(**{"intercom_sidecar.event.source": "intake"}): 0}


def test_outcomes(metrics: Metrics, reader: InMemoryMetricReader, clock: Clock) -> None:
    metrics.event_delivered(accepted_at=NOW - 0.2)
    metrics.event_delivered(accepted_at=NOW - 120)
    metrics.event_delivered(accepted_at=NOW + 5)  # clocks disagree: never a negative latency
    metrics.event_rejected()
    metrics.event_abandoned()
    metrics.event_dead_lettered()

    outcome = "intercom_sidecar.delivery.outcome"
    assert values(reader, names.METRIC_DELIVERIES) == {
        one(**{outcome: "delivered"}): 3,
        one(**{outcome: "rejected"}): 1,
        one(**{outcome: "abandoned"}): 1,
    }
    assert values(reader, names.METRIC_EVENTS_DELIVERED) == {one(): 3}
    assert values(reader, names.METRIC_EVENTS_DEAD_LETTERED) == {one(): 2}  # the rejection and the other one


def test_end_to_end_latency_histogram(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.event_delivered(accepted_at=NOW - 0.2)
    metrics.event_delivered(accepted_at=NOW - 120)
    metrics.event_delivered(accepted_at=NOW + 5)

    metric = collected(reader)[names.METRIC_DELIVERY_LATENCY]
    assert metric.unit == "s"
    assert isinstance(metric.data, Histogram)
    (point,) = metric.data.data_points
    assert point.count == 3
    assert point.sum == pytest.approx(120.2)
    assert tuple(point.explicit_bounds) == DELIVERY_LATENCY_BUCKETS
    counts = dict(zip(point.explicit_bounds, point.bucket_counts, strict=False))
    assert counts[0.005] == 1  # the 0 s one
    assert counts[0.25] == 1  # 0.2 s
    assert counts[300.0] == 1  # 120 s


def test_retries_by_status_or_error_type(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.delivery_retried(503)
    metrics.delivery_retried(503)
    metrics.delivery_retried(429)
    metrics.delivery_retried(None, "timeout")
    metrics.delivery_retried(None, "something Intercom said")

    assert values(reader, names.METRIC_DELIVERY_RETRIES) == {
        one(**{"http.response.status_code": 503}): 2,
        one(**{"http.response.status_code": 429}): 1,
        one(**{"error.type": "timeout"}): 1,
        one(**{"error.type": "other"}): 1,
    }


def test_intercom_calls_their_duration_and_429s(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.intercom_call("PUT /contacts/{id}", 200, 0.04)
    metrics.intercom_call("PUT /contacts/{id}", 200, 0.06)
    metrics.intercom_call("POST /events", 429, 0.01)
    metrics.intercom_call("POST /events", None, 10.0, error_type="timeout")

    endpoint, status = "intercom.endpoint", "http.response.status_code"
    assert values(reader, names.METRIC_INTERCOM_REQUESTS) == {
        one(**{endpoint: "PUT /contacts/{id}", status: 200}): 2,
        one(**{endpoint: "POST /events", status: 429}): 1,
        one(**{endpoint: "POST /events", "error.type": "timeout"}): 1,
    }
    assert values(reader, names.METRIC_INTERCOM_THROTTLED) == {one(**{endpoint: "POST /events"}): 1}
    duration = collected(reader)[names.METRIC_INTERCOM_REQUEST_DURATION]
    assert duration.unit == "s"
    by_series = {frozenset(p.attributes.items()): (p.count, p.sum) for p in duration.data.data_points}
    assert by_series[one(**{endpoint: "PUT /contacts/{id}", status: 200})] == (2, pytest.approx(0.1))
    assert by_series[one(**{endpoint: "POST /events", "error.type": "timeout"})] == (1, 10.0)


def test_rate_limit_wait_is_a_counter_of_seconds(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.rate_limit_waited(1.5)
    metrics.rate_limit_waited(0.25)
    metrics.rate_limit_waited(0.0)
    metrics.rate_limit_waited(float("nan"))

    assert values(reader, names.METRIC_RATE_LIMIT_WAIT) == {one(): 1.75}
    assert collected(reader)[names.METRIC_RATE_LIMIT_WAIT].unit == "s"


def test_dropped_metadata_keys(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.metadata_keys_dropped(0)
    metrics.metadata_keys_dropped(4)
    assert values(reader, names.METRIC_METADATA_KEYS_DROPPED) == {one(): 4}


def test_observed_queue_caches_skipped_writes_and_dropped_attributes(
    metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    state: dict[str, Any] = {"depth": 3, "age": 12.5, "hits": 7, "misses": 2, "skipped": 5, "dropped": 1}
    metrics.observe_queue(lambda: state["depth"], lambda: state["age"])
    metrics.observe_cache("contacts", lambda: state["hits"], lambda: state["misses"])
    metrics.observe_cache("companies", lambda: 0, lambda: 1)
    metrics.observe_skipped_writes("contact", lambda: state["skipped"])
    metrics.observe_skipped_writes("company", lambda: 0)
    metrics.observe_dropped_attributes(lambda: state["dropped"])

    assert values(reader, names.METRIC_QUEUE_DEPTH) == {one(): 3}
    assert values(reader, names.METRIC_QUEUE_OLDEST_AGE) == {one(): 12.5}
    cache, result = "intercom_sidecar.cache.name", "intercom_sidecar.cache.result"
    assert values(reader, names.METRIC_CACHE_LOOKUPS) == {
        one(**{cache: "contacts", result: "hit"}): 7,
        one(**{cache: "contacts", result: "miss"}): 2,
        one(**{cache: "companies", result: "hit"}): 0,
        one(**{cache: "companies", result: "miss"}): 1,
    }
    assert values(reader, names.METRIC_WRITES_SKIPPED) == {
        one(**{"intercom.model": "contact"}): 5,
        one(**{"intercom.model": "company"}): 0,
    }
    assert values(reader, names.METRIC_ATTRIBUTES_DROPPED) == {one(): 1}

    state.update(depth=0, age=0.0, hits=9)  # read again at the next collection
    metrics.observe_queue(lambda: state["depth"], lambda: state["age"])  # registering again replaces
    assert values(reader, names.METRIC_QUEUE_DEPTH) == {one(): 0}
    assert values(reader, names.METRIC_CACHE_LOOKUPS)[one(**{cache: "contacts", result: "hit"})] == 9


def test_units_and_kinds(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.observe_queue(lambda: 0, lambda: 0.0)
    metrics.event_delivered(NOW)
    metrics.intercom_call("GET /me", 200, 0.1)
    metrics.rate_limit_waited(1)
    units = {name: metric.unit for name, metric in collected(reader).items()}
    assert units[names.METRIC_QUEUE_OLDEST_AGE] == "s"
    assert units[names.METRIC_QUEUE_DEPTH] == "{event}"
    assert units[names.METRIC_EVENTS_ACCEPTED] == "{event}"
    assert all(name.startswith("intercom_sidecar.") for name in units)


def test_works_without_a_provider() -> None:
    for metrics in (Metrics(), Metrics(NoOpMeterProvider())):
        metrics.event_received("track", AckStatus.ACCEPTED)
        metrics.event_delivered(NOW)
        metrics.intercom_call("POST /events", 202, 0.1)
        metrics.observe_queue(lambda: 1, lambda: 1.0)


# Nothing sensitive ----------------------------------------------------------------------------------------

SECRET = "jane@example.com"


def test_labels_never_carry_event_data(metrics: Metrics, reader: InMemoryMetricReader) -> None:
    metrics.event_received(SECRET, SECRET)
    metrics.events_accepted(source=SECRET)
    metrics.intercom_call(f"PUT /contacts/{SECRET}", 200, 0.1)
    metrics.intercom_call(f"PUT /contacts/{SECRET}", 429, 0.1)
    metrics.intercom_call("POST /events", None, 0.1, error_type=SECRET)
    metrics.delivery_retried(None, SECRET)
    metrics.observe_cache(SECRET, lambda: 1, lambda: 1)
    metrics.observe_skipped_writes(SECRET, lambda: 1)

    scrape = render_text(reader.get_metrics_data())
    assert SECRET not in scrape
    assert "jane" not in scrape
    assert 'intercom_endpoint="other"' in scrape


def test_every_endpoint_template_in_the_code_is_known() -> None:
    """A new Intercom route must be added to `names.ENDPOINT_TEMPLATES`, or its calls are labelled `other`."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "fake" in path.parts or "_generated" in path.parts:
            continue
        found.update(re.findall(r'endpoint="([A-Z]+ /[^"]*)"', path.read_text()))
    assert found, "no endpoint templates found: has the client's `endpoint=` argument changed?"
    assert found <= names.ENDPOINT_TEMPLATES, sorted(found - names.ENDPOINT_TEMPLATES)


# The invariant, read from a scrape ------------------------------------------------------------------------


def scraped(reader: PrometheusReader) -> dict[str, float]:
    """Prometheus sample name -> value summed over its labels, parsed from the text the endpoint serves."""
    totals: dict[str, float] = {}
    for line in render_text(reader.get_metrics_data()).splitlines():
        if line and not line.startswith("#"):
            name, value = re.fullmatch(r"([a-z_:]+)(?:\{.*\})? (\S+)", line).groups()  # type: ignore[union-attr]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def invariant(reader: PrometheusReader) -> tuple[float, float]:
    """(accepted, delivered + filtered + dead_lettered + queued) from one scrape."""
    s = scraped(reader)
    settled = (
        s["intercom_sidecar_events_delivered_total"]
        + s["intercom_sidecar_events_filtered_total"]
        + s["intercom_sidecar_events_dead_lettered_total"]
        + s.get("intercom_sidecar_queue_depth", 0.0)
    )
    return s["intercom_sidecar_events_accepted_total"], settled


def test_invariant_in_a_scripted_run(clock: Clock) -> None:
    reader = PrometheusReader()
    metrics = Metrics(make_meter_provider({}, readers=(reader,)), clock=clock)
    pending: set[str] = set()
    metrics.observe_queue(lambda: len(pending), lambda: 0.0)

    def holds() -> None:
        accepted, settled = invariant(reader)
        assert accepted == settled

    holds()
    pending |= {"r1", "r2", "r3"}  # found in the spool at start
    metrics.events_accepted(3, source="recovered")
    holds()
    for message_id in ("a", "b", "c"):  # spooled at intake
        pending.add(message_id)
        metrics.events_accepted()
        metrics.event_received("track", AckStatus.ACCEPTED)
    metrics.event_filtered()
    metrics.event_received("page", AckStatus.FILTERED)
    metrics.event_received("track", AckStatus.INVALID)  # never accepted
    metrics.event_received("track", AckStatus.DUPLICATE)  # accepted the first time only
    metrics.event_received("track", AckStatus.RETRY_LATER)
    holds()
    pending -= {"r1", "a"}
    metrics.event_delivered(NOW - 1)
    metrics.event_delivered(NOW - 1)
    pending.discard("b")
    metrics.event_rejected()
    pending.discard("r2")  # no longer valid under today's settings
    metrics.event_dead_lettered()
    metrics.event_abandoned()  # "c": stays pending
    holds()
    pending.add("b")  # replayed by an operator
    metrics.events_accepted(1, source="replayed")
    holds()
    assert invariant(reader) == (8.0, 8.0)
    assert scraped(reader)["intercom_sidecar_queue_depth"] == 3


def plan_of(name: str) -> Plan:
    step = CreateDataEvent(contact=ContactRef(external_id=name, email=None), body={"event_name": name})
    return Plan(steps=(step,))


class Sender:
    """Intercom takes every plan except those named `bad-*`."""

    async def send(self, plan: Plan) -> None:
        step = plan.steps[0]
        assert isinstance(step, CreateDataEvent)
        if str(step.body["event_name"]).startswith("bad"):
            raise PermanentError("intercom 400 bad_request: no", status=400, code="bad_request")


async def test_invariant_with_the_real_spool_and_pipeline(clock: Clock) -> None:
    """The wiring the lead is asked to do, done from the outside: the identity holds against the spool's depth."""
    reader = PrometheusReader()
    metrics = Metrics(make_meter_provider({}, readers=(reader,)), clock=clock)
    spool = MemorySpool(max_events=100, max_bytes=1 << 20, clock=clock)
    await spool.open()
    metrics.observe_queue(lambda: spool.depth()[0], lambda: 0.0)
    retry = RetryConfig(initial_backoff_seconds=0.01, max_backoff_seconds=0.01, max_elapsed_seconds=1.0)
    pipeline = Pipeline(Sender(), QueueConfig(workers=2), retry, clock=FakeClock())
    pipeline.start()
    spooler = Spooler(spool, pipeline)

    def settle(accepted_at: float) -> Any:
        def on_outcome(outcome: Outcome) -> None:
            if isinstance(outcome, Delivered):
                metrics.event_delivered(accepted_at)
            elif isinstance(outcome, Rejected):
                metrics.event_rejected()
            elif isinstance(outcome, Abandoned):
                metrics.event_abandoned()

        return on_outcome

    names_sent = ["ok-1", "ok-2", "bad-1", "ok-1", "ok-3"]  # the second ok-1 is a duplicate message id
    futures = []
    for name in names_sent:
        entry = SpoolEntry(name, name, b"{}", "0" * 32, clock())
        futures.append(appended_future(spooler, entry, plan_of(name), settle(entry.accepted_at)))
    seqs = [await future for future in futures]
    metrics.events_accepted(sum(1 for seq in seqs if seq is not None))
    metrics.event_filtered()  # a page in ignore mode, say
    assert invariant(reader)[0] == invariant(reader)[1]

    await pipeline.wait_idle()
    assert invariant(reader) == (5.0, 5.0)
    totals = scraped(reader)
    assert totals["intercom_sidecar_events_delivered_total"] == 3
    assert totals["intercom_sidecar_events_dead_lettered_total"] == 1
    assert totals["intercom_sidecar_queue_depth"] == 0
    await spooler.close()
    await pipeline.shutdown(0)
    await spool.close()


# The setting ----------------------------------------------------------------------------------------------
