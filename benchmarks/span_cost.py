"""What one recorded span costs, in instructions: the event span and its validation child, as intake makes them.

Counted with callgrind (instructions do not depend on what else the machine is doing), once with no events to
subtract start-up, once with N:

    for kind in off recorded batched; do for n in 0 2000; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python -m benchmarks.span_cost $kind $n \\
        2>&1 | grep Collected; done; done

(per event = (Collected at N - Collected at 0) / N). `off`: the default with no exporter (spans not recorded);
`recorded`: always-on sampling, no processor; `batched`: plus a BatchSpanProcessor with an exporter that keeps
nothing, as with OTLP.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import set_span_in_context


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main(argv: Sequence[str]) -> int:
    kind, events = argv[0], int(argv[1])
    provider = TracerProvider(sampler=ALWAYS_OFF) if kind == "off" else TracerProvider()
    if kind == "batched":
        provider.add_span_processor(BatchSpanProcessor(_Discard()))
    tracer = provider.get_tracer("intercom_sidecar")
    for number in range(events):
        span = tracer.start_span("intercom_sidecar.event", attributes={"segment.message_id": f"m{number}"})
        child = tracer.start_span("intercom_sidecar.validate", context=set_span_in_context(span))
        child.end()
        span.end()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
