"""Latency probe: where an ACCEPTED ack's tail comes from, at a paced rate on one stream.

    flock /tmp/bench.lock uv run --frozen python -m benchmarks.latency_probe [--rate 2000] [--seconds 3] [--held]

The sidecar runs instrumented (it is slowed a little by that): each spool group commit is timed (the COMMIT
statement apart, and whether it ran a WAL checkpoint, read from the -shm file's backfill counter), the hop from the
writer thread back to the event loop, each append from `Spooler.accept` to its durable write, garbage collections
by generation, and every event-loop callback slower than 2 ms. The client records each ack's latency with the time
its event was sent, so the slow acks can be lined up with what the sidecar was doing then. Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import mmap
import os
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from benchmarks.events import track_events
from benchmarks.hosts import run_fake, sidecar_config
from benchmarks.processes import Child, Commands, quiet_logging, serve_commands
from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2_grpc

__all__ = ["main"]

_SLOW_CALLBACK = 0.002


class _Recorder:
    def __init__(self) -> None:
        self.commits: list[tuple[float, float, float, int, int, bool, int]] = []
        """(start, seconds, COMMIT seconds, ops, callers, checkpointed, wal bytes)"""
        self.handoffs: list[float] = []
        self.appends: list[tuple[float, float]] = []
        self.gcs: list[tuple[float, float, int, float, int]] = []
        """(start, seconds, generation, CPU seconds of the thread, objects collected)"""
        self.slow: list[tuple[float, float, str]] = []
        self.begins: list[float] = []
        """BEGIN IMMEDIATE, which costs SQLite microseconds: the rest is waiting for the GIL."""
        self.prunes: list[tuple[float, float]] = []


def _instrument(spool_dir: Path, rec: _Recorder) -> None:
    """Patch the spool writer, spooler, gc and the loop's Handle to record timings into `rec`."""
    from intercom_sidecar.delivery import spool_files, spool_writer, spooler

    real_prune = spool_files.prune_dedupe

    def timed_prune(*args: Any) -> int:  # this version's signature, or an older one's
        t0 = time.perf_counter()
        try:
            return real_prune(*args)
        finally:
            rec.prunes.append((t0, time.perf_counter() - t0))

    spool_files.prune_dedupe = timed_prune  # type: ignore[assignment]

    commit_time = [0.0]

    class TimedConnection(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "BEGIN IMMEDIATE":
                t0 = time.perf_counter()
                try:
                    return super().execute(sql, *args)
                finally:
                    rec.begins.append(time.perf_counter() - t0)
            if sql == "COMMIT":
                t0 = time.perf_counter()
                try:
                    return super().execute(sql, *args)
                finally:
                    commit_time[0] = time.perf_counter() - t0
            return super().execute(sql, *args)

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", TimedConnection)
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    shm_path = spool_dir / "spool.db-shm"
    wal_path = spool_dir / "spool.db-wal"
    shm: list[mmap.mmap] = []

    def backfill() -> int:
        if not shm:
            try:
                fd = os.open(shm_path, os.O_RDONLY)
            except FileNotFoundError:
                return -1
            shm.append(mmap.mmap(fd, 4096, prot=mmap.PROT_READ))
            os.close(fd)
        # WAL-index header: two 48-byte copies, then the checkpoint info whose first u32 is nBackfill.
        return int(struct.unpack_from("=I", shm[0], 96)[0])

    real_commit = spool_writer.Writer._commit
    committed: dict[int, float] = {}

    def timed_commit_slots(self: Any, conn: sqlite3.Connection, group: list[Any]) -> Any:
        before = backfill()
        t0 = time.perf_counter()
        out = real_commit(self, conn, group)
        t1 = time.perf_counter()
        after = backfill()
        try:
            wal = wal_path.stat().st_size
        except FileNotFoundError:
            wal = 0
        callers = sum(1 for op in group if op.future is not None)
        rec.commits.append((t0, t1 - t0, commit_time[0], len(group), callers, after != before, wal))
        committed[id(group[-1])] = t1
        return out

    spool_writer.Writer._commit = timed_commit_slots  # type: ignore[method-assign]
    real_settle = spool_writer._settle

    def timed_settle(group: list[Any], results: Any, error: Any) -> None:
        at = committed.pop(id(group[-1]), None) if group else None
        if at is not None:
            rec.handoffs.append(time.perf_counter() - at)
        real_settle(group, results, error)

    spool_writer._settle = timed_settle
    real_accept = spooler.Spooler.accept

    def timed_accept(self: Any, entry: Any, plan: Any, appended: Any, *args: Any, **kwargs: Any) -> None:
        t0 = time.perf_counter()

        def timed_appended(seq: Any, error: Any) -> None:
            rec.appends.append((t0, time.perf_counter() - t0))
            appended(seq, error)

        real_accept(self, entry, plan, timed_appended, *args, **kwargs)

    spooler.Spooler.accept = timed_accept  # type: ignore[method-assign]
    gc_started = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[:] = time.perf_counter(), time.thread_time()
        else:
            wall, cpu = time.perf_counter() - gc_started[0], time.thread_time() - gc_started[1]
            rec.gcs.append((gc_started[0], wall, info["generation"], cpu, info["collected"]))

    gc.callbacks.append(on_gc)
    real_run = asyncio.events.Handle._run

    def timed_run(self: asyncio.events.Handle) -> None:
        t0 = time.perf_counter()
        real_run(self)
        spent = time.perf_counter() - t0
        if spent > _SLOW_CALLBACK:
            rec.slow.append((t0, spent, repr(self)[:160]))

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]


async def _serve(
    conn: Connection, fake_url: str, token: str, thresholds: tuple[int, ...] | None, switch_interval: float | None
) -> None:
    from intercom_sidecar.app import App
    from intercom_sidecar.runtime import tune_garbage_collector

    with tempfile.TemporaryDirectory(prefix="bench-spool-") as spool_dir:
        rec = _Recorder()
        _instrument(Path(spool_dir), rec)
        app = App(sidecar_config(fake_url, token, Path(spool_dir)))
        await app.start()
        tune_garbage_collector()
        if thresholds:
            gc.set_threshold(*thresholds)
        if switch_interval:
            sys.setswitchinterval(switch_interval)

        async def stats() -> dict[str, Any]:
            return {
                "commits": rec.commits,
                "handoffs": rec.handoffs,
                "appends": rec.appends,
                "gcs": rec.gcs,
                "slow": rec.slow,
                "begins": rec.begins,
                "prunes": rec.prunes,
            }

        async def stop() -> None:
            await app.stop()

        commands: Commands = {"stats": stats, "stop": stop}
        await serve_commands(conn, {"target": f"127.0.0.1:{app.port}"}, commands)


def _run_sidecar(
    conn: Connection, fake_url: str, token: str, thresholds: tuple[int, ...] | None, switch_interval: float | None
) -> None:
    quiet_logging()
    asyncio.run(_serve(conn, fake_url, token, thresholds, switch_interval))


async def _paced(target: str, rate: float, seconds: float, users: int, tag: str) -> dict[str, Any]:
    count = int(rate * seconds)
    events = track_events(count, users, tag)
    sent: dict[str, float] = {}
    acks: list[tuple[float, float]] = []

    async def paced() -> AsyncIterator[event_pb2.Event]:
        start = time.perf_counter()
        for number, event in enumerate(events):
            delay = start + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[event.message_id] = time.perf_counter()
            yield event

    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        call = service_pb2_grpc.EventServiceStub(channel).Stream(paced(), timeout=120)
        try:
            async with asyncio.timeout(seconds + 5):
                async for ack in call:
                    at = sent[ack.message_id]
                    acks.append((at, time.perf_counter() - at))
        except TimeoutError:
            call.cancel()
    return {"acks": acks, "offered": len(sent)}


def _run_client(conn: Connection) -> None:
    quiet_logging()

    async def nothing() -> None:
        return None

    asyncio.run(serve_commands(conn, {}, {"paced": _paced, "stop": nothing}))


def _pct(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _ms(values: list[float]) -> str:
    return (
        f"n={len(values)} p50 {_pct(values, 0.5) * 1e3:.2f} p90 {_pct(values, 0.9) * 1e3:.2f} "
        f"p99 {_pct(values, 0.99) * 1e3:.2f} max {max(values, default=math.nan) * 1e3:.2f} ms"
    )


def _report(out: dict[str, Any], stats: dict[str, Any], slow_ack: float) -> None:
    acks = out["acks"]
    latencies = [latency for _, latency in acks]
    print(f"acks: {_ms(latencies)}; offered {out['offered']}, unacked {out['offered'] - len(acks)}")
    commits = stats["commits"]
    print(f"group commits: {_ms([c[1] for c in commits])}")
    print(f"  COMMIT statement: {_ms([c[2] for c in commits])}")
    checkpoints = [c for c in commits if c[5]]
    print(f"  while a WAL checkpoint ran (in it, or beside it): {len(checkpoints)}: {_ms([c[1] for c in checkpoints])}")
    print(f"  ops per group: mean {statistics.fmean([c[3] for c in commits]):.1f}, max {max(c[3] for c in commits)}")
    print(f"  WAL bytes at the end: {commits[-1][6]:,}, max {max(c[6] for c in commits):,}")
    print(f"  BEGIN (GIL wait): {_ms(stats['begins'])}")
    print(f"  dedupe prune: {_ms([p[1] for p in stats['prunes']])}")
    print(f"writer -> loop hand-off: {_ms(stats['handoffs'])}")
    print(f"append (accept -> durable): {_ms([a[1] for a in stats['appends']])}")
    gcs = stats["gcs"]
    for generation in (0, 1, 2):
        print(f"gc gen {generation}: {_ms([g[1] for g in gcs if g[2] == generation])}")
        cpu = [g[3] for g in gcs if g[2] == generation]
        print(f"    CPU: {_ms(cpu)}, total {sum(cpu) * 1e3:.1f} ms")
    slow = stats["slow"]
    print(f"loop callbacks over {_SLOW_CALLBACK * 1e3:g} ms: {len(slow)}, total {sum(s[1] for s in slow) * 1e3:.1f} ms")
    for kind, n in Counter(s[2].split(" at ")[0][:100] for s in slow).most_common(8):
        print(f"   {n:5d} {kind}")
    # Line up the slow acks with what overlapped them.
    slow_acks = [(at, latency) for at, latency in acks if latency > slow_ack]
    print(f"acks over {slow_ack * 1e3:g} ms: {len(slow_acks)}")
    causes: Counter[str] = Counter()
    for at, latency in slow_acks:
        end = at + latency
        found = []
        if any(c[5] and c[0] < end and c[0] + c[1] > at for c in commits):
            found.append("checkpoint")
        if any(c[1] > 0.005 and not c[5] and c[0] < end and c[0] + c[1] > at for c in commits):
            found.append("slow commit")
        if any(p[0] < end and p[0] + p[1] > at and p[1] > 0.002 for p in stats["prunes"]):
            found.append("prune")
        if any(g[2] == 2 and g[0] < end and g[0] + g[1] > at for g in gcs):
            found.append("gc2")
        if any(g[2] < 2 and g[1] > 0.002 and g[0] < end and g[0] + g[1] > at for g in gcs):
            found.append("gc0/1 slow")
        if any(s[0] < end and s[0] + s[1] > at for s in slow):
            found.append("slow callback")
        causes[" + ".join(found) or "none seen"] += 1
    for cause, n in causes.most_common():
        print(f"   {n:5d} {cause}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency_probe", description=__doc__)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--held", action="store_true", help="the fake Intercom holds every delivery")
    parser.add_argument("--gc-thresholds", help="e.g. 10000,10,100: gc.set_threshold after the sidecar's own tuning")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval in the sidecar (seconds)")
    parser.add_argument("--dump", help="write the raw timings to this JSON file")
    parser.add_argument("--slow-ack-ms", type=float, default=10.0)
    args = parser.parse_args()
    fake = Child("fake-intercom", run_fake, 1000)
    client = Child("client", _run_client)
    try:
        fake.call("set_latency", 60.0 if args.held else 0.0)
        thresholds = tuple(int(n) for n in args.gc_thresholds.split(",")) if args.gc_thresholds else None
        sidecar = Child("sidecar", _run_sidecar, fake.info["url"], fake.info["token"], thresholds, args.switch_interval)
        try:
            out = client.call("paced", sidecar.info["target"], args.rate, args.seconds, 1000, "probe")
            stats = sidecar.call("stats")
        finally:
            sidecar.close()
            fake.call("set_latency", 0.0)
        _report(out, stats, args.slow_ack_ms / 1e3)
        if args.dump:
            Path(args.dump).write_text(json.dumps({"client": out, "sidecar": stats}))
    finally:
        client.close()
        fake.close()


if __name__ == "__main__":
    main()
