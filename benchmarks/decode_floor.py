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


def measure_floor(count: int = 5_000) -> dict[str, float]:
    """µs of CPU per event for parsing and for validating/converting, their sum, and the events/s it allows."""
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
    floor_us = parse_us + decode_us
    return {
        "events": count,
        "parse_us": parse_us,
        "decode_us": decode_us,
        "floor_us": floor_us,
        "max_events_per_s": 1e6 / floor_us,
    }


def format_floor(number: int, floor: dict[str, float]) -> str:
    return "\n".join(
        [
            f"{number}. Floor: what every accepted event costs before the sidecar's own work (in process, "
            f"{floor['events']:,.0f} track events, median of {_REPEATS})",
            f"   parse (SendRequest, batches of {_BATCH})         {floor['parse_us']:6.1f} µs/event",
            f"   validate + convert (event_from_proto)      {floor['decode_us']:6.1f} µs/event",
            f"   together                                   {floor['floor_us']:6.1f} µs/event: at most "
            f"{floor['max_events_per_s']:,.0f} events/s on one core with nothing else done",
        ]
    )


def main(argv: Sequence[str]) -> int:
    print(format_floor(1, measure_floor(int(argv[0]) if argv else 5_000)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
