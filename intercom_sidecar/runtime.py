"""Process-wide tuning for a long-running sidecar process: Python's cyclic garbage collector.

A busy sidecar allocates several objects per event (its span, ack, plan, futures), and with the collector's default
thresholds (a young collection every 700 net allocations, an older one every ten of those) the collections walk
the delivery window's queued plans and every object built at start-up, over and over. Two changes, made once the
sidecar has started:

- `gc.freeze()` moves what start-up built (modules, protobuf descriptors, configuration, caches) out of the
  collector's sight for good; it is not garbage and never will be.
- A young generation of 2,000 objects, an older one collected every 10 young collections: about 3 times rarer
  than the defaults, yet every collection stays short, and each one stops the event loop (every ack waits). Ack
  latency sets the limit: with 50,000 young objects a young collection took 12-22 ms of CPU and the older one
  (every 20 of those: a million allocations) would walk everything that survived them; at 2,000 events/s with
  deliveries held (`python -m benchmarks.latency_probe --held --seconds 8 --gc-thresholds ...`) 2,000/10 keeps
  young collections under 1.5 ms and older ones under 10 ms, for 7 µs of collector CPU per event instead of 5.
  Reference counting frees almost everything anyway; cycles wait a little longer.

What the freeze saves in `Send` throughput: see the README's Performance section. Libraries embedding `App`
are left alone: only `intercom-sidecar serve` (and the benchmark, which measures it) calls this.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_garbage_collector"]

GC_THRESHOLDS = (2_000, 10, 100)


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
