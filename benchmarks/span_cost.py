"""What tracing an event costs, in instructions: the event span and its validation child, as intake makes them, then
(for the exporting kinds) the batch processor and the OTLP encoding the exporter does before it posts.

Counted with callgrind (instructions do not depend on what else the machine is doing; every thread is counted, so
the processor's worker and the encoding are in), once with no events to subtract start-up, once with N:

    for kind in sdk-off off sdk-recorded sdk-batched sdk-exported recorded batched exported; do for n in 0 2000; do
      flock /tmp/bench.lock valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m benchmarks.span_cost $kind $n 2>&1 | grep Collected; done; done

(per event = (Collected at N - Collected at 0) / N). The kinds:

- `sdk-off`: the SDK's TracerProvider with no exporter (spans not recorded), as the sidecar had it before.
- `off`: the default with no exporter, as `make_tracer_provider` builds it (spans not recorded).
- `sdk-recorded`: the SDK's TracerProvider, always-on sampling, no processor: recording alone.
- `sdk-batched`: plus a BatchSpanProcessor with an exporter that keeps nothing.
- `sdk-exported`: plus the SDK's OTLP encoding (`encode_spans(...).SerializePartialToString()`, what both OTLP
  exporters do before sending): everything but the network.
- `recorded`, `batched`, `exported`: the same three with what `make_tracer_provider` builds instead: the sidecar's
  own tracer (`telemetry/tracer.py`), its span processor (`telemetry/processor.py`) and its encoder
  (`telemetry/otlp.py`; with the sidecar's exporters the processor encodes each span as it ends, and the export
  only joins the bytes into a request).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import set_span_in_context

from intercom_sidecar.telemetry import otlp
from intercom_sidecar.telemetry.processor import QueueSpanProcessor
from intercom_sidecar.telemetry.tracer import LeanTracerProvider

KINDS = ("sdk-off", "off", "sdk-recorded", "sdk-batched", "sdk-exported", "recorded", "batched", "exported")


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _SdkEncode(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        sdk_encode_spans(spans).SerializePartialToString()
        return SpanExportResult.SUCCESS


class _Encode(SpanExporter):
    """As the sidecar's OTLP exporters: spans arrive encoded (by the processor, as each ends), the request is
    put together from them."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        otlp.encode_spans(spans)
        return SpanExportResult.SUCCESS

    def export_encoded(
        self, spans: Sequence[otlp.EncodedSpan | bytes], home: otlp.Home | None = None
    ) -> SpanExportResult:
        otlp.encode_request(spans, home)
        return SpanExportResult.SUCCESS


def _provider(kind: str) -> TracerProvider:
    resource = Resource.create({"service.name": "intercom-sidecar", "service.version": "0"})
    if kind == "sdk-off":
        return TracerProvider(sampler=ALWAYS_OFF, resource=resource)
    if kind == "off":
        return LeanTracerProvider(sampler=ALWAYS_OFF, resource=resource)
    exporter: SpanExporter | None = {"batched": _Discard(), "exported": _Encode()}.get(kind.removeprefix("sdk-"))
    if kind.startswith("sdk-"):
        provider = TracerProvider(resource=resource)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter if kind != "sdk-exported" else _SdkEncode()))
        return provider
    return _sidecar_provider(resource, exporter)


def _sidecar_provider(resource: Resource, exporter: SpanExporter | None) -> TracerProvider:
    provider = LeanTracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(QueueSpanProcessor(exporter))
    return provider


def main(argv: Sequence[str]) -> int:
    kind, events = argv[0], int(argv[1])
    if kind not in KINDS:
        print(f"kind must be one of {', '.join(KINDS)}", file=sys.stderr)
        return 2
    provider = _provider(kind)
    tracer = provider.get_tracer("intercom_sidecar")
    for number in range(events):  # as Intake.submit does, for an accepted event
        span = tracer.start_span("intercom_sidecar.event", attributes={"segment.message_id": f"m{number}"})
        context = set_span_in_context(span)
        if span.is_recording():  # the validate child is started and ended, never made current
            validate = tracer.start_span("intercom_sidecar.validate", context=context)
            span.set_attribute("segment.type", "track")
            validate.end()
        else:
            span.set_attribute("segment.type", "track")
        span.set_attribute("intercom_sidecar.ack.status", "accepted")
        span.end()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
