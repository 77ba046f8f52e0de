"""The Prometheus scrape endpoint: `GET /metrics` in the text exposition format 0.0.4, from OpenTelemetry data.

    MeterProvider ─▶ PrometheusReader (pull, cumulative) ─▶ render_text() ─▶ GET /metrics on the admin address

Written here rather than taken from `opentelemetry-exporter-prometheus`: that package brings `prometheus_client`
and is released as a pre-release pinned to each SDK version, and it serves from a thread, where our observable
callbacks would read event-loop state. Rendering is a page of code; the server answers on the event loop.

Names follow OpenTelemetry's Prometheus compatibility rules: dots (and anything else outside `[a-zA-Z0-9_:]`)
become underscores, the unit is appended (`s` -> `_seconds`; `{event}`-style units are dropped), monotonic sums
become counters ending in `_total`, histograms become `_bucket{le=...}`, `_sum` and `_count`. No resource
attributes and no timestamps are exposed.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Final, Protocol

from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    MetricsData,
    Sum,
)
from opentelemetry.util.types import Attributes

from intercom_sidecar.http_server import Handler, Request, Response

__all__ = [
    "CONTENT_TYPE",
    "MetricsSource",
    "PrometheusReader",
    "metrics_handler",
    "render_text",
]

_log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_UNIT_SUFFIXES: Final = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent"}
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]+")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]+")


class MetricsSource(Protocol):
    """What the endpoint reads: `PrometheusReader`, or a test's `InMemoryMetricReader`."""

    def get_metrics_data(self) -> MetricsData | None: ...


class PrometheusReader(InMemoryMetricReader):
    """A pull reader: each scrape collects (running the observable callbacks) and renders cumulative values.

    Pass it to `make_meter_provider(readers=...)` and to `metrics_handler`.
    """


# Rendering --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Family:
    kind: str
    help: str
    lines: list[str] = field(default_factory=list)


def render_text(data: MetricsData | None) -> str:
    """Every metric in `data`, in the Prometheus text format 0.0.4. Families are grouped by their final name."""
    families: dict[str, _Family] = {}
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                _add(families, metric)
    out: list[str] = []
    for name, family in families.items():
        if family.help:
            out.append(f"# HELP {name} {_escape_help(family.help)}\n")
        out.append(f"# TYPE {name} {family.kind}\n")
        out.extend(family.lines)
    return "".join(out)


def _add(families: dict[str, _Family], metric: Metric) -> None:
    data = metric.data
    base = _metric_name(metric.name, metric.unit or "")
    if isinstance(data, Sum) and data.is_monotonic:
        name, kind = base if base.endswith("_total") else f"{base}_total", "counter"
    elif isinstance(data, Sum | Gauge):
        name, kind = base, "gauge"
    elif isinstance(data, Histogram):
        name, kind = base, "histogram"
    else:  # exponential histograms: not used by the sidecar, and not in the 0.0.4 format
        return
    family = families.setdefault(name, _Family(kind, metric.description or ""))
    if family.kind != kind:  # two instruments that collide once converted: keep the first
        return
    if isinstance(data, Histogram):
        for point in data.data_points:
            labels = _labels(point.attributes)
            cumulative = 0
            for bound, count in zip(point.explicit_bounds, point.bucket_counts, strict=False):
                cumulative += count
                family.lines.append(f"{name}_bucket{_braces(labels, _le(bound))} {cumulative}\n")
            family.lines.append(f"{name}_bucket{_braces(labels, _le(math.inf))} {point.count}\n")
            family.lines.append(f"{name}_sum{_braces(labels)} {_value(point.sum)}\n")
            family.lines.append(f"{name}_count{_braces(labels)} {point.count}\n")
    else:
        for number in data.data_points:
            family.lines.append(f"{name}{_braces(_labels(number.attributes))} {_value(number.value)}\n")


def _metric_name(name: str, unit: str) -> str:
    converted = _INVALID_NAME.sub("_", name).strip("_") or "_"
    if converted[0].isdigit():
        converted = f"_{converted}"
    suffix = _UNIT_SUFFIXES.get(unit, "")
    if suffix and not converted.endswith(f"_{suffix}"):
        converted = f"{converted}_{suffix}"
    return converted


def _labels(attributes: Attributes) -> list[str]:
    """`key="value"` pairs sorted by key; keys that collide once converted have their values joined with `;`."""
    merged: dict[str, list[str]] = {}
    for key, value in sorted((attributes or {}).items()):
        label = _INVALID_LABEL.sub("_", key)
        if label[:1].isdigit():
            label = f"key_{label}"
        text = ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
        merged.setdefault(label, []).append(text)
    return [f'{label}="{_escape_value(";".join(values))}"' for label, values in sorted(merged.items())]


def _braces(labels: list[str], extra: str = "") -> str:
    pairs = [*labels, extra] if extra else labels
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _le(bound: float) -> str:
    return f'le="{_value(float(bound))}"'


def _value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


# Serving ----------------------------------------------------------------------------------------------------


def metrics_handler(source: MetricsSource) -> Handler:
    """The `GET /metrics` route of the admin address: each request collects and renders `source`."""

    async def scrape(request: Request) -> Response:
        try:
            body = render_text(source.get_metrics_data()).encode("utf-8")
        except Exception:
            _log.exception("Could not render the metrics.")
            return Response(500, b"Could not render the metrics.\n", [("content-type", "text/plain; charset=utf-8")])
        return Response(200, body, [("content-type", CONTENT_TYPE)])

    return scrape
