"""`make bench`: throughput and latency of the sidecar next to a bare grpc.aio ceiling, all on 127.0.0.1.

Run with `python -m benchmarks` (see `__main__`). Every server, the client and the fake Intercom run in their own
processes, so the client's CPU is never taken from the server's event loop.
"""
