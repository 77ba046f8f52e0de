"""Export, from the standard OpenTelemetry environment variables.

Spans are always created (every ack carries its event's trace id); they are recorded and exported only when an
exporter is chosen: `OTEL_TRACES_EXPORTER=otlp|console|none`, where an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) alone also means `otlp`; with nothing set, nothing is exported.
`OTEL_EXPORTER_OTLP_PROTOCOL` picks `grpc` (default) or `http/protobuf`; the exporters read the other
`OTEL_EXPORTER_OTLP_*` settings (headers, certificates, timeouts) themselves. Metrics follow the same rules with
`OTEL_METRICS_EXPORTER` (and the Prometheus endpoint, `INTERCOM_SIDECAR_METRICS_LISTEN`, works either way).
Sampling (`OTEL_TRACES_SAMPLER`, read by the SDK) never changes delivery.

The pieces are the sidecar's own, cheaper than the SDK's defaults for the same output: a `LeanTracerProvider`
(`telemetry/tracer.py`, spans that are their own ReadableSpan), a `QueueSpanProcessor` (`telemetry/processor.py`,
in place of BatchSpanProcessor, sized by `OTEL_BSP_*`) and OTLP exporters that send bytes written by
`telemetry/otlp.py` (`telemetry/exporters.py`). Extra processors (tests) see the same spans.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from intercom_sidecar import __version__
from intercom_sidecar.errors import ConfigError
from intercom_sidecar.telemetry.processor import QueueSpanProcessor
from intercom_sidecar.telemetry.tracer import LeanTracerProvider

__all__ = ["make_tracer_provider", "metric_readers"]

_EXPORTERS = ("otlp", "console", "none")
_PROTOCOLS = ("grpc", "http/protobuf")


def make_tracer_provider(
    env: Mapping[str, str] | None = None, *, processors: tuple[SpanProcessor, ...] = ()
) -> TracerProvider:
    """A provider for the sidecar's own use (not installed globally). Extra `processors` serve tests."""
    env = os.environ if env is None else env
    resource = _resource(env)
    exporter = _choice(env, "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if exporter == "none" and not processors:
        # Nothing would see the spans: do not record them (a recorded span costs tens of microseconds per event).
        # Spans still get real trace ids, from the caller's traceparent or fresh, so every ack carries one.
        return LeanTracerProvider(resource=resource, sampler=ALWAYS_OFF)
    provider = LeanTracerProvider(resource=resource)
    if exporter != "none":
        provider.add_span_processor(QueueSpanProcessor(_span_exporter(exporter, env), env=env))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def metric_readers(env: Mapping[str, str] | None = None) -> tuple[MetricReader, ...]:
    """The periodic exporting reader `OTEL_METRICS_EXPORTER` asks for, if any."""
    env = os.environ if env is None else env
    exporter = _choice(env, "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    if exporter == "none":
        return ()
    if exporter == "console":
        return (PeriodicExportingMetricReader(ConsoleMetricExporter()),)
    if _protocol(env) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # type: ignore[assignment]
    return (PeriodicExportingMetricReader(OTLPMetricExporter()),)


def _span_exporter(exporter: str, env: Mapping[str, str]) -> SpanExporter:
    if exporter == "console":
        return ConsoleSpanExporter()
    from intercom_sidecar.telemetry.exporters import GrpcSpanExporter, HttpSpanExporter

    return GrpcSpanExporter() if _protocol(env) == "grpc" else HttpSpanExporter()


def _choice(env: Mapping[str, str], key: str, signal_endpoint: str) -> str:
    value = env.get(key, "").strip().lower()
    if not value:
        endpoint = env.get(signal_endpoint, "").strip() or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        return "otlp" if endpoint else "none"
    if value not in _EXPORTERS:
        raise ConfigError(key, f"must be one of {', '.join(_EXPORTERS)}, got {value!r}")
    return value


def _protocol(env: Mapping[str, str]) -> str:
    value = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower() or "grpc"
    if value not in _PROTOCOLS:
        raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL", f"must be one of {', '.join(_PROTOCOLS)}, got {value!r}")
    return value


def _resource(env: Mapping[str, str]) -> Resource:
    name = env.get("OTEL_SERVICE_NAME", "").strip() or "intercom-sidecar"
    return Resource.create({"service.name": name, "service.version": __version__})
