"""An OTLP trace collector on 127.0.0.1 for tests: a synchronous gRPC server around a TraceService servicer."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc


@contextmanager
def serve_trace_collector(servicer: trace_service_pb2_grpc.TraceServiceServicer) -> Iterator[int]:
    """Serve `servicer` on a free loopback port (its own threads, so an exporter can flush while a test's event
    loop waits); the port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0)
