"""The floor under intake: what every accepted event must cost before the sidecar does anything of its own.

An event cannot be acknowledged before its bytes are parsed and it is validated (`event_from_proto`: ids,
timestamps, and the Structs converted to Python values with their limits checked, so a bad value gets INVALID on its
own ack). This measures those two steps alone, in process, on the benchmark's track events, and what one core could
take if they were all it did (no mapping, durable write, span, ack or gRPC):

    .venv/bin/python -m benchmarks.decode_floor [N]

Process-time medians of 15 runs of N events (default 5,000), batches of 100 as `Send` carries them.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks.events import track_events
from intercom_sidecar._generated.intercom_sidecar.v1 import service_pb2
from intercom_sidecar.config import LimitsConfig
from intercom_sidecar.model.from_proto import event_from_proto

_BATCH = 100
_REPEATS = 15


def _median_us(work: Callable[[], int]) -> float:
    """Median process time per item of `work` (which returns how many items it handled), in µs."""
    runs = []
    for _ in range(_REPEATS):
        started = time.process_time()
        items = work()
        runs.append((time.process_time() - started) / items * 1e6)
    return statistics.median(runs)


def main(argv: Sequence[str]) -> int:
    count = int(argv[0]) if argv else 5_000
    events = track_events(count, 1_000, "floor")
    requests = [
        service_pb2.SendRequest(events=events[i : i + _BATCH]).SerializeToString() for i in range(0, count, _BATCH)
    ]
    limits = LimitsConfig()
    now = time.time()

    def parse() -> int:
        parsed = 0
        for request in requests:
            parsed += len(service_pb2.SendRequest.FromString(request).events)
        return parsed

    def decode() -> int:
        for event in events:
            event_from_proto(event, now=now, limits=limits)
        return len(events)

    parse_us, decode_us = _median_us(parse), _median_us(decode)
    floor = parse_us + decode_us
    print(f"{count:,} track events (benchmarks/events.py), median of {_REPEATS} runs, CPU per event:")
    print(f"  parse (SendRequest, batches of {_BATCH})        {parse_us:6.1f} µs")
    print(f"  validate + convert (event_from_proto)     {decode_us:6.1f} µs")
    print(f"  floor                                      {floor:6.1f} µs")
    print(f"at most {1e6 / floor:,.0f} events/s on one core with nothing else done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
