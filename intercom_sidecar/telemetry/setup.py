"""The tracer provider. Spans are always created (every ack carries its event's trace id); they are exported
only when `OTEL_TRACES_EXPORTER` asks for it. Sampling (`OTEL_TRACES_SAMPLER`) never changes delivery."""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

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
    provider = TracerProvider(resource=resource)
    exporter = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter != "none":
        raise ConfigError("OTEL_TRACES_EXPORTER", f"must be none or console in this version, got {exporter!r}")
    for processor in processors:
        provider.add_span_processor(processor)
    return provider
