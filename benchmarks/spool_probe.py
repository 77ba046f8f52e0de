"""Spool probe: how fast `SqliteSpool.append` stores events with synchronous=FULL, by concurrency and batch size.

    uv run python -m benchmarks.spool_probe [--seconds 1.0] [--payload-bytes 1024]

Each appender task appends batches of fresh 1 KB events in a loop and marks them complete at once (so the
database stays small, as it does while Intercom keeps up). Every append waits for its group's fsync. Reported:
events/s, commits/s, events per commit, append latency percentiles and CPU per event (user + system, both
threads), with the default commit interval (the writer lingers up to 2 ms for as many callers as the previous
group had) and without lingering. Back-to-back appenders batch well without lingering (the event loop enqueues
every ready caller before the writer thread gets the GIL); the think-time rows show what lingering buys when
arrivals are spread out, as they are from separate clients.

`--insert N` instead times the writer thread's SQL alone: N bench-sized track events stored in batches of 200
(one transaction each, synchronous=FULL) straight through `spool_files.insert_new`, no threads, no event loop.
Its instruction count is the noise-free figure (`--insert-build N` does everything but the inserts):

    for run in --insert-build --insert; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
      .venv/bin/python -m benchmarks.spool_probe $run 5000 2>&1 | grep Collected; done
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.events import track_events
from intercom_sidecar.delivery import spool_files
from intercom_sidecar.delivery.spool import SpoolEntry
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool

__all__ = ["ProbeResult", "measure_append_throughput", "measure_inserts"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    appenders: int
    batch: int
    linger_seconds: float
    think_ms: float
    """Each appender waited a random 0..think_ms between appends (0: back to back)."""
    events_per_second: float
    commits_per_second: float
    events_per_commit: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_event: float
    """CPU time of the whole process (event loop and writer thread) per stored event."""


async def _probe(
    directory: Path, *, appenders: int, batch: int, linger: float, seconds: float, payload: bytes, think: float = 0.0
) -> ProbeResult:
    spool = SqliteSpool(directory, max_events=10**9, max_bytes=10**12, commit_interval_seconds=linger)
    await spool.open()
    latencies: list[float] = []
    stored = 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(7)

    async def appender(worker: int) -> None:
        nonlocal stored
        n = 0
        while time.perf_counter() < deadline:
            if think:
                await asyncio.sleep(rng.uniform(0.0, think))  # arrivals spread in time, as from separate clients
            entries = [
                SpoolEntry(f"w{worker}-{n + i}", f"user-{(n + i) % 50}", payload, "0" * 32, time.time())
                for i in range(batch)
            ]
            n += batch
            started = time.perf_counter()
            seqs = await spool.append(entries)
            latencies.append(time.perf_counter() - started)
            stored += len(seqs)
            spool.complete([seq for seq in seqs if seq is not None])

    commits_before = spool.commits
    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(*(appender(n) for n in range(appenders)))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    commits = spool.commits - commits_before
    await spool.close()
    latencies.sort()
    return ProbeResult(
        appenders=appenders,
        batch=batch,
        linger_seconds=linger,
        think_ms=think * 1000,
        events_per_second=stored / elapsed,
        commits_per_second=commits / elapsed,
        events_per_commit=stored / max(commits, 1),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        cpu_us_per_event=cpu / max(stored, 1) * 1e6,
    )


def measure_append_throughput(
    *, seconds: float = 1.0, payload_bytes: int = 1024, lingers: tuple[float, ...] = (0.002, 0.0)
) -> list[ProbeResult]:
    """Every combination of 1/4/16 appenders, 100/1-event batches and `lingers`, back to back; then 16 appenders
    of 1-event batches whose arrivals are spread by 0..1 ms and 0..5 ms of think time. Each in a fresh directory."""
    payload = b"x" * payload_bytes
    runs = [(linger, batch, appenders, 0.0) for linger in lingers for batch in (100, 1) for appenders in (1, 4, 16)] + [
        (linger, 1, 16, think) for think in (0.001, 0.005) for linger in lingers
    ]
    results = []
    for linger, batch, appenders, think in runs:
        with tempfile.TemporaryDirectory(prefix="spool-probe-") as directory:
            probe = _probe(
                Path(directory),
                appenders=appenders,
                batch=batch,
                linger=linger,
                seconds=seconds,
                payload=payload,
                think=think,
            )
            results.append(asyncio.run(probe))
    return results


def measure_inserts(count: int, *, batch: int = 200, build_only: bool = False, uuid_ids: bool = False) -> float:
    """CPU seconds (process time) to store `count` bench track events, `batch` per transaction, with the writer's
    statements: the spool's SQL without its threads. With `uuid_ids`, message ids are random UUIDs, as clients
    send them, rather than the bench's `tag-N`: each lands on a random page of the dedupe index."""
    payloads = [event.SerializeToString() + _TRACEPARENT_FIELD for event in track_events(count, 1000, "insert-probe")]
    rng = random.Random(7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in payloads] if uuid_ids else None
    entries = [
        SpoolEntry(ids[n] if ids else f"insert-probe-{n}", f"user-{n % 1000}", payload, "0" * 32, time.time())
        for n, payload in enumerate(payloads)
    ]
    with tempfile.TemporaryDirectory(prefix="spool-probe-") as directory:
        conn, _ = spool_files.open_database(Path(directory), time.time())
        try:
            if build_only:
                return 0.0
            started = time.process_time()
            for start in range(0, count, batch):
                conn.execute("BEGIN IMMEDIATE")
                stored = spool_files.insert_new(conn, entries[start : start + batch], time.time())
                assert stored is not None
                conn.execute("COMMIT")
            return time.process_time() - started
        finally:
            conn.close()


_TRACEPARENT_FIELD = b"\x52" + bytes(70)
"""About what the spooled payload adds to the event: its `trace_context` map with one traceparent."""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spool_probe", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="how long each combination runs")
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--insert", type=int, metavar="N", help="time the writer's inserts of N events alone")
    parser.add_argument("--insert-build", type=int, metavar="N", help="--insert's set-up only (callgrind baseline)")
    parser.add_argument("--uuid-ids", action="store_true", help="with --insert: random UUID message ids")
    arguments = parser.parse_args()
    if arguments.insert_build:
        measure_inserts(arguments.insert_build, build_only=True, uuid_ids=arguments.uuid_ids)
        return
    if arguments.insert:
        spent = measure_inserts(arguments.insert, uuid_ids=arguments.uuid_ids)
        ids = "UUID" if arguments.uuid_ids else "tag-N"
        print(f"inserts: {spent / arguments.insert * 1e6:.2f} µs CPU per event ({arguments.insert} events, {ids} ids)")
        return
    print(
        f"{'linger':>6} {'think':>6} {'batch':>5} {'appenders':>9} {'events/s':>9} {'commits/s':>9} {'ev/commit':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU us/ev':>9}"
    )
    for r in measure_append_throughput(seconds=arguments.seconds, payload_bytes=arguments.payload_bytes):
        print(
            f"{r.linger_seconds * 1000:>4.0f}ms {r.think_ms:>4.0f}ms {r.batch:>5} {r.appenders:>9} "
            f"{r.events_per_second:>9,.0f} {r.commits_per_second:>9,.0f} {r.events_per_commit:>9.1f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.cpu_us_per_event:>9.1f}"
        )


if __name__ == "__main__":
    main()
