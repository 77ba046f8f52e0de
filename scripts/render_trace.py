"""Render a real trace to an SVG waterfall (docs/trace.svg, shown in the README's "Tracing an event").

A traced caller sends an identify and a track over gRPC to a sidecar delivering to the fake Intercom, whose first
`POST /events` answers 503, so the picture shows a retried attempt. Every span is captured in memory (the
caller's and the sidecar's) and drawn on one time axis: one row per span, indented under its parent.

    .venv/bin/python scripts/render_trace.py [OUTPUT.svg]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path

import grpc
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import set_span_in_context

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.app import App
from intercom_sidecar.config import (
    Config,
    IntercomConfig,
    RetryConfig,
    Secret,
    SegmentConfig,
    ServerConfig,
    SpoolConfig,
)
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.telemetry.setup import make_tracer_provider

__all__ = ["capture_trace", "render_svg"]

ROOT = Path(__file__).resolve().parents[1]
_ROW = 22
_LABEL_WIDTH = 330
_BAR_WIDTH = 560
_DETAIL_KEYS = (
    "segment.type",
    "intercom_sidecar.ack.status",
    "retry.attempt",
    "http.response.status_code",
    "intercom.ratelimit.remaining",
)


async def capture_trace() -> list[ReadableSpan]:
    """Every span of one caller's trace: its own span, and the sidecar's spans for an identify and a track."""
    fake = FakeIntercom()
    await fake.start("127.0.0.1", 0)
    fake.faults.script("POST", "/events", status=503, times=1)
    sidecar_spans, caller_spans = InMemorySpanExporter(), InMemorySpanExporter()
    with tempfile.TemporaryDirectory() as spool_dir:
        config = Config(
            intercom=IntercomConfig(token=Secret(fake.token), base_url=fake.url),
            server=ServerConfig(listen="127.0.0.1:0"),
            retry=RetryConfig(initial_backoff_seconds=0.02, max_backoff_seconds=0.05),
            spool=SpoolConfig(kind="sqlite", directory=Path(spool_dir)),
            segment=SegmentConfig(listen=""),
        )
        provider = make_tracer_provider({}, processors=(SimpleSpanProcessor(sidecar_spans),))
        async with App(config, tracer_provider=provider) as app:
            caller = TracerProvider()
            caller.add_span_processor(SimpleSpanProcessor(caller_spans))
            with caller.get_tracer("checkout").start_as_current_span("checkout: POST /orders") as span:
                carrier: dict[str, str] = {}
                inject(carrier, context=set_span_in_context(span))
                async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                    stub = service_pb2_grpc.EventServiceStub(channel)
                    await stub.Send(
                        service_pb2.SendRequest(events=_events()),
                        metadata=(*carrier.items(), ("x-ack-mode", "delivered")),
                        timeout=10,
                    )
            await app.wait_idle()
    await fake.stop()
    spans = [*caller_spans.get_finished_spans(), *sidecar_spans.get_finished_spans()]
    trace_id = caller_spans.get_finished_spans()[0].context.trace_id
    return [span for span in spans if span.context.trace_id == trace_id]


def _events() -> list[event_pb2.Event]:
    identify = event_pb2.Event(message_id="order-42-identify", user_id="user-42", identify=event_pb2.Identify())
    identify.identify.traits.update({"email": "ada@example.com", "plan": "pro"})
    track = event_pb2.Event(message_id="order-42-paid", user_id="user-42", track=event_pb2.Track(event="Order Paid"))
    track.track.properties.update({"revenue": 19.99, "currency": "EUR"})
    for event in (identify, track):
        event.timestamp.GetCurrentTime()
    return [identify, track]


def render_svg(spans: Sequence[ReadableSpan]) -> str:
    """A waterfall: rows in tree order (children by start time), bars scaled to the trace's duration."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(span)
    rows: list[tuple[int, ReadableSpan]] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time or 0):
            rows.append((depth, span))
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    start = min(span.start_time or 0 for span in spans)
    end = max(span.end_time or 0 for span in spans)
    scale = _BAR_WIDTH / max(end - start, 1)
    height = _ROW * (len(rows) + 2)
    width = _LABEL_WIDTH + _BAR_WIDTH + 360
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="8" y="15" fill="#555">trace {format(spans[0].context.trace_id, "032x")}, '
        f"{(end - start) / 1e6:.1f} ms</text>",
    ]
    for number, (depth, span) in enumerate(rows, start=1):
        y = _ROW * number + 6
        x = _LABEL_WIDTH + ((span.start_time or start) - start) * scale
        bar = max(((span.end_time or end) - (span.start_time or start)) * scale, 1.5)
        failed = (
            span.status.status_code.name == "ERROR"
            or (span.attributes or {}).get("http.response.status_code", 200) >= 500
        )  # type: ignore[operator]
        color = "#d9534f" if failed else ("#7a8fa6" if depth == 0 else "#3b82c4")
        details = ", ".join(
            f"{key.rsplit('.', 1)[-1]}={(span.attributes or {})[key]}"
            for key in _DETAIL_KEYS
            if key in (span.attributes or {})
        )
        out.append(f'<text x="{8 + depth * 14}" y="{y + 12}">{escape(span.name)}</text>')
        out.append(f'<rect x="{x:.1f}" y="{y}" width="{bar:.1f}" height="14" rx="2" fill="{color}"/>')
        duration = ((span.end_time or end) - (span.start_time or start)) / 1e6
        out.append(
            f'<text x="{_LABEL_WIDTH + _BAR_WIDTH + 8}" y="{y + 12}" fill="#333">{duration:.1f} ms '
            f"{escape(details)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str]) -> int:
    output = Path(argv[0]) if argv else ROOT / "docs" / "trace.svg"
    spans = asyncio.run(capture_trace())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_svg(spans), encoding="utf-8")
    print(f"wrote {output}: {len(spans)} spans")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
