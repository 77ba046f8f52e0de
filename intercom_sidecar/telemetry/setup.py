"""The tracer provider. Spans are always created (every ack carries its event's trace id); they are exported
only when `OTEL_TRACES_EXPORTER` asks for it. Sampling (`OTEL_TRACES_SAMPLER`) never changes delivery."""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from intercom_sidecar import __version__
from intercom_sidecar.errors import ConfigError

__all__ = ["make_tracer_provider"]


def make_tracer_provider(
    env: Mapping[str, str] | None = None, *, processors: tuple[SpanProcessor, ...] = ()
) -> TracerProvider:
    """A provider for the sidecar's own use (not installed globally). Extra `processors` serve tests."""
    env = os.environ if env is None else env
    resource = Resource.create(
        {"service.name": env.get("OTEL_SERVICE_NAME", "intercom-sidecar"), "service.version": __version__}
    )
    exporter = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"
    if exporter not in ("none", "console"):
        raise ConfigError("OTEL_TRACES_EXPORTER", f"must be none or console in this version, got {exporter!r}")
    if exporter == "none" and not processors:
        # Nothing would see the spans: do not record them (a recorded span costs tens of microseconds per event).
        # Spans still get real trace ids, from the caller's traceparent or fresh, so every ack carries one.
        return TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    provider = TracerProvider(resource=resource)
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider
