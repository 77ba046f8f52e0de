"""Process-wide tuning for a long-running sidecar process: Python's cyclic garbage collector.

A busy sidecar allocates several objects per event (its span, ack, plan, futures), and with the collector's default
thresholds (a young collection every 700 net allocations, an older one every ten of those) the collections walk
the delivery window's queued plans and every object built at start-up, over and over. Two changes, made once the
sidecar has started:

- `gc.freeze()` moves what start-up built (modules, protobuf descriptors, configuration, caches) out of the
  collector's sight for good; it is not garbage and never will be.
- A young generation of 50,000 objects: collections are ~70 times rarer, each one still short (young objects only).
  Reference counting frees almost everything anyway; cycles wait a little longer.

Measured by `make bench` (Send, delivery held): see the README's Performance section. Libraries embedding `App`
are left alone: only `intercom-sidecar serve` (and the benchmark, which measures it) calls this.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_garbage_collector"]

GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
