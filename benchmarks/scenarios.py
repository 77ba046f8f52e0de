"""The measurements. Each run gets a fresh server process (ceiling or sidecar); the client and the fake Intercom
live for the whole benchmark. Targets alternate within each repeat, so drift on the machine hits all alike.

Targets: `ceiling` (bare grpc.aio servicer), `sidecar` (the real thing, delivering to the fake while it takes
events), and `sidecar-held`: the same sidecar while the fake holds every answer for a minute, so its workers
sit waiting and the event loop does intake only. The gap between the two sidecar columns is what delivery costs
the intake path. `sidecar-held-traced` is that sidecar configured to export every span by OTLP
(`OTEL_EXPORTER_OTLP_ENDPOINT`, the default protocol: gRPC) to a sink in the fake's process: recording, batching,
encoding and sending; `sidecar-held-traced-http` does the same over OTLP/HTTP. Tracing's cost on `Send` has a
scenario of its own (`tracing`: the untraced and traced columns only, with more repeats than the others).
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.backlog import fill_spool, run_backlog_sidecar
from benchmarks.ceiling import run_ceiling
from benchmarks.client import run_client
from benchmarks.hosts import run_fake, run_sidecar
from benchmarks.processes import Child
from benchmarks.transport import CLIENT, H11, HTTPCORE_ONE_POOL, HTTPCORE_SPLIT, TRANSPORT_LABELS, run_transport_client

__all__ = [
    "BACKLOG",
    "CEILING",
    "EMPTY_SPOOL",
    "HELD",
    "HELD_TRACED",
    "HELD_TRACED_HTTP",
    "INTERCOM_PACE",
    "SIDECAR",
    "TARGET_LABELS",
    "Bench",
    "Run",
    "Scenario",
    "Settings",
    "percentile",
    "run_scenario",
    "scenarios",
]

CEILING = "ceiling"
SIDECAR = "sidecar"
HELD = "sidecar-held"
HELD_TRACED = "sidecar-held-traced"
HELD_TRACED_HTTP = "sidecar-held-traced-http"
INTERCOM_PACE = "sidecar-intercom-pace"
EMPTY_SPOOL = "sidecar-empty-spool"
BACKLOG = "sidecar-backlog"
TARGET_LABELS = {
    EMPTY_SPOOL: "sidecar, empty spool",
    BACKLOG: "sidecar, spool backlog",
    CEILING: "ceiling",
    SIDECAR: "sidecar, Intercom answering at once",
    HELD: "sidecar, delivery held",
    HELD_TRACED: "same, every span exported",
    HELD_TRACED_HTTP: "same, over OTLP/HTTP",
    INTERCOM_PACE: "sidecar, delivering at Intercom's pace",
    **TRANSPORT_LABELS,
}
_OTLP_SINKS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    HELD_TRACED: lambda info: (info["otlp_grpc_endpoint"], "grpc"),
    HELD_TRACED_HTTP: lambda info: (info["otlp_http_endpoint"], "http/protobuf"),
}
"""The traced targets' exports: to the fake's sinks, over OTLP's default protocol (gRPC) and over HTTP."""
_HOLD_SECONDS = 60.0
_INTERCOM_CALLS_PER_WINDOW = 1_666
"""Intercom's default rate limit: 10,000 calls a minute per app, counted in 10-second windows."""
_INTERCOM_LATENCY_SECONDS = 0.05

Run = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Settings:
    repeats: int = 3
    tracing_repeats: int = 9
    """Repeats of the tracing scenario: its target (tracing costs `Send` under 15%) is within a few points of what
    it measures, and one repeat differs from the next by up to ten points on these machines."""
    users: int = 1_000
    max_seconds: float = 5.0
    """The measurement window's cap for a stream or Send run: what is not acked by then is not counted."""
    stream_events: int = 20_000
    send_events: int = 50_000
    send_batch: int = 100
    send_in_flight: int = 4
    paced_rate: float = 2_000.0
    paced_low_rate: float = 250.0
    """A second, sidecar-only latency run below what it can deliver, to see ack latency when not overloaded."""
    paced_seconds: float = 3.0
    ack_wait_seconds: float = 3.0
    """After the paced offer, how long to wait for the remaining acks; later ones count as never acked (inf)."""
    delivery_events: int = 5_000
    delivery_latency_seconds: float = 0.05
    transport_calls: int = 2_000
    transport_concurrency: int = 32
    transport_latency_seconds: float = 0.05
    calls_events_per_hour: int = 10_000
    backlog_events: int = 1_000_000
    backlog_seconds: float = 20.0
    """How long the sidecar delivers from the backlog before its memory is read."""


@dataclass
class Bench:
    """The client and fake Intercom processes, and a factory for per-run servers."""

    settings: Settings
    profile: bool = False
    profiles: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fake = Child("fake-intercom", run_fake, self.settings.users)
        try:
            self.client = Child("client", run_client)
        except BaseException:
            self.fake.close()
            raise

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.fake.close()

    @contextmanager
    def server(self, kind: str) -> Iterator[Child]:
        # Earlier runs' spool writes are still in the page cache; the kernel would write them back (after 30 s, on
        # its threads, on these two cores) in the middle of some later run. Flushed now, before this one starts.
        os.sync()
        if kind == CEILING:
            child = Child(CEILING, run_ceiling)
        else:
            self.fake.call("reset_ledger")
            held = kind in (HELD, HELD_TRACED, HELD_TRACED_HTTP)
            self.fake.call("set_latency", _HOLD_SECONDS if held else 0.0)
            if kind == INTERCOM_PACE:  # what production looks like: every call answered, at Intercom's limit
                self.fake.call("set_latency", _INTERCOM_LATENCY_SECONDS)
                self.fake.call("set_rate_limit", _INTERCOM_CALLS_PER_WINDOW)
            child = Child(
                kind,
                run_sidecar,
                self.fake.info["url"],
                self.fake.info["token"],
                self.profile,
                _OTLP_SINKS[kind](self.fake.info) if kind in _OTLP_SINKS else None,
            )
        try:
            yield child
        finally:
            profile = child.close()
            if kind in (HELD, HELD_TRACED, HELD_TRACED_HTTP, INTERCOM_PACE):
                self.fake.call("set_latency", 0.0)
            if kind == INTERCOM_PACE:
                self.fake.call("set_rate_limit", None)
            if profile:
                self.profiles.append(profile)

    def cpu(self, server: Child) -> dict[str, float]:
        return {"server": server.cpu_seconds(), "client": self.client.cpu_seconds(), "fake": self.fake.cpu_seconds()}

    def calls(self, kind: str) -> dict[str, int]:
        """Intercom calls the fake has received (answered or held) since this run's sidecar started."""
        return {} if kind == CEILING else dict(self.fake.call("counts"))


def _cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {f"{name}_cpu_s": round(after[name] - before[name], 3) for name in before}


def _throughput(out: Run, cpu: dict[str, float]) -> Run:
    seconds = out["finished"] - out["started"]
    return {
        "events": out["events"],
        "offered": out["offered"],
        "seconds": seconds,
        "events_per_s": out["events"] / seconds,
        "server_cpu_us_per_event": cpu["server_cpu_s"] / out["events"] * 1e6,
        "capped": out.get("capped", False),
        "statuses": out["statuses"],
        **cpu,
    }


def stream_run(bench: Bench, kind: str, tag: str) -> Run:
    s = bench.settings
    with bench.server(kind) as server:
        before = bench.cpu(server)
        out = bench.client.call("stream", server.info["target"], s.stream_events, s.users, tag, s.max_seconds)
        cpu = _cpu_used(before, bench.cpu(server))
        calls = bench.calls(kind)
    return {**_throughput(out, cpu), "intercom_calls_during_run": calls}


def send_run(bench: Bench, kind: str, tag: str) -> Run:
    s = bench.settings
    with bench.server(kind) as server:
        before = bench.cpu(server)
        target = server.info["target"]
        out = bench.client.call(
            "send", target, s.send_events, s.users, tag, s.send_batch, s.send_in_flight, s.max_seconds
        )
        cpu = _cpu_used(before, bench.cpu(server))
        calls = bench.calls(kind)
    return {**_throughput(out, cpu), "intercom_calls_during_run": calls}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of unsorted `values` (NaN when there are none)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def latency_run(bench: Bench, kind: str, tag: str, rate: float) -> Run:
    s = bench.settings
    with bench.server(kind) as server:
        before = bench.cpu(server)
        target = server.info["target"]
        out = bench.client.call("paced", target, rate, s.paced_seconds, s.users, tag, s.ack_wait_seconds)
        cpu = _cpu_used(before, bench.cpu(server))
    unacked = out["offered"] - out["events"]
    latencies: list[float] = out["latencies"] + [math.inf] * unacked
    return {
        "accepted_p50_ms": percentile(latencies, 0.50) * 1e3,
        "accepted_p99_ms": percentile(latencies, 0.99) * 1e3,
        "accepted_max_ms": percentile(latencies, 1.0) * 1e3,
        "offered": out["offered"],
        "unacked": unacked,
        "offered_events_per_s": out["offered"] / max(out["last_sent"] - out["started"], 1e-9),
        "statuses": out["statuses"],
        **cpu,
    }


def delivery_run(bench: Bench, kind: str, tag: str) -> Run:
    """Send the events in batches (fast), then wait until every one has its outcome from the fake, which answers
    each call after Intercom-like latency."""
    s = bench.settings
    with bench.server(kind) as server:
        bench.fake.call("set_latency", s.delivery_latency_seconds)
        before = bench.cpu(server)
        target = server.info["target"]
        out = bench.client.call(
            "send", target, s.delivery_events, s.users, tag, s.send_batch, s.send_in_flight, float("inf")
        )
        idle_at: float = server.call("wait_idle", timeout=300)
        cpu = _cpu_used(before, bench.cpu(server))
        calls = bench.calls(kind)
        bench.fake.call("set_latency", 0.0)
    delivered = calls.get("POST /events 202", 0)
    total_calls = sum(calls.values())
    seconds = idle_at - out["started"]
    return {
        "seconds": seconds,
        "intake_seconds": out["finished"] - out["started"],
        "delivered": delivered,
        "delivered_events_per_s": delivered / seconds,
        "intercom_calls": total_calls,
        "calls_by_status": calls,
        "sidecar_cpu_ms_per_call": cpu["server_cpu_s"] / total_calls * 1e3 if total_calls else float("nan"),
        "sidecar_cores": cpu["server_cpu_s"] / seconds,
        "statuses": out["statuses"],
        **cpu,
    }


def transport_run(bench: Bench, kind: str, tag: str) -> Run:
    """The HTTP client alone, in a fresh process, against the fake Intercom answering after a set latency."""
    s = bench.settings
    bench.fake.call("reset_ledger")
    bench.fake.call("set_latency", s.transport_latency_seconds)
    child = Child(f"http-client-{kind}", run_transport_client)
    try:
        fake_before = bench.fake.cpu_seconds()
        fake = bench.fake.info
        out = child.call(
            "measure", kind, fake["url"], fake["token"], s.transport_concurrency, s.transport_calls, s.users
        )
        fake_cpu = bench.fake.cpu_seconds() - fake_before
    finally:
        child.close()
        bench.fake.call("set_latency", 0.0)
    return {**out, "fake_cpu_s": round(fake_cpu, 3)}


def backlog_run(bench: Bench, kind: str, tag: str) -> Run:
    """A sidecar started on a spool holding the backlog (or none), delivering for a while at Intercom-like latency."""
    s = bench.settings
    events = s.backlog_events if kind == BACKLOG else 0
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as spool_dir:
        fill_seconds = 0.0
        if events:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                fill_seconds = pool.submit(fill_spool, Path(spool_dir), events, s.users).result()
        bench.fake.call("reset_ledger")
        bench.fake.call("set_latency", s.transport_latency_seconds)
        fake = bench.fake.info
        child = Child(kind, run_backlog_sidecar, fake["url"], fake["token"], spool_dir, events, start_timeout=600)
        try:
            cpu_before = child.cpu_seconds()
            pending_before = child.call("pending")
            time.sleep(s.backlog_seconds)  # the measurement window: the sidecar delivers meanwhile
            memory = child.call("memory")
            pending_after = child.call("pending")
            cpu = child.cpu_seconds() - cpu_before
        finally:
            child.close()
            bench.fake.call("set_latency", 0.0)
    return {
        "backlog": pending_before,
        "rss_mib": memory["rss_kib"] / 1024,
        "peak_rss_mib": memory["peak_rss_kib"] / 1024,
        "rss_after_start_mib": child.info["rss_kib"] / 1024,
        "start_seconds": child.info["start_seconds"],
        "delivered_events_per_s": (pending_before - pending_after) / s.backlog_seconds,
        "cpu_cores": cpu / s.backlog_seconds,
        "fill_seconds": fill_seconds,
    }


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    targets: tuple[str, ...]
    run: Callable[[Bench, str, str], Run]
    metrics: tuple[tuple[str, str, str], ...]
    """(result key, label, format) shown in the table."""
    ratio: bool = False
    """Show each other column's first metric divided by the baseline's."""
    baseline: str = CEILING
    repeats: int | None = None
    """Runs per column; None: the bench's `repeats`."""


def scenarios(settings: Settings) -> list[Scenario]:
    s = settings
    throughput = (
        ("events_per_s", "events/s (acked)", ",.0f"),
        ("server_cpu_us_per_event", "server CPU µs/event", ",.1f"),
        ("fake_cpu_s", "fake CPU s", ".2f"),
        ("client_cpu_s", "client CPU s", ".2f"),
    )
    latency = (
        ("accepted_p50_ms", "ACCEPTED p50 ms", ",.2f"),
        ("accepted_p99_ms", "ACCEPTED p99 ms", ",.2f"),
        ("accepted_max_ms", "ACCEPTED max ms", ",.1f"),
        ("offered_events_per_s", "achieved offer events/s", ",.0f"),
        ("unacked", "not acked in time", ",.0f"),
        ("server_cpu_s", "server CPU s", ".2f"),
    )
    capped = f"window capped at {s.max_seconds:g} s"
    return [
        Scenario(
            "stream",
            f"Stream, 1 stream, up to {s.stream_events:,} track events over {s.users:,} users ({capped})",
            (CEILING, SIDECAR, INTERCOM_PACE, HELD, HELD_TRACED),
            stream_run,
            throughput,
            ratio=True,
        ),
        Scenario(
            "send",
            f"Send, up to {s.send_events:,} events in batches of {s.send_batch}, {s.send_in_flight} calls in flight "
            f"({capped})",
            (CEILING, SIDECAR, INTERCOM_PACE, HELD),
            send_run,
            throughput,
            ratio=True,
        ),
        Scenario(
            "tracing",
            f"Tracing's cost on Send ({s.send_batch} events per call, {s.send_in_flight} in flight), deliveries held: "
            f"untraced, then every span exported over OTLP/gRPC (the default) and over OTLP/HTTP; "
            f"{s.tracing_repeats} repeat{'s' if s.tracing_repeats != 1 else ''}, each traced run divided by the "
            f"untraced run of its repeat",
            (HELD, HELD_TRACED, HELD_TRACED_HTTP),
            send_run,
            throughput,
            repeats=s.tracing_repeats,
        ),
        *(
            Scenario(
                key,
                f"Ack latency, 1 stream offered {rate:,.0f} events/s for {s.paced_seconds:g} s "
                f"(inf: not acked {s.ack_wait_seconds:g} s after the offer ended)",
                targets,
                _at_rate(rate),
                latency,
            )
            for key, rate, targets in (
                ("latency", s.paced_rate, (CEILING, SIDECAR, INTERCOM_PACE, HELD)),
                ("latency-low", s.paced_low_rate, (SIDECAR, INTERCOM_PACE)),
            )
        ),
        Scenario(
            "delivery",
            f"Delivery to the fake Intercom answering after {s.delivery_latency_seconds * 1e3:g} ms: "
            f"{s.delivery_events:,} track events by Send, until all have an outcome",
            (SIDECAR,),
            delivery_run,
            (
                ("delivered_events_per_s", "delivered events/s", ",.0f"),
                ("sidecar_cores", "sidecar CPU cores", ".2f"),
                ("sidecar_cpu_ms_per_call", "sidecar CPU ms/call", ".3f"),
                ("intercom_calls", "Intercom calls", ",.0f"),
                ("intake_seconds", "intake s (Send)", ".2f"),
                ("seconds", "total s", ".2f"),
                ("fake_cpu_s", "fake CPU s", ".2f"),
            ),
        ),
        Scenario(
            "backlog",
            f"Memory with a backlog: the sidecar started on a spool of {s.backlog_events:,} pending events (or none), "
            f"then delivering for {s.backlog_seconds:g} s, fake Intercom answering after "
            f"{s.transport_latency_seconds * 1e3:g} ms",
            (EMPTY_SPOOL, BACKLOG),
            backlog_run,
            (
                ("peak_rss_mib", "peak RSS MiB", ",.0f"),
                ("rss_after_start_mib", "RSS after start MiB", ",.0f"),
                ("backlog", "pending at start", ",.0f"),
                ("start_seconds", "start s", ".2f"),
                ("delivered_events_per_s", "delivered events/s", ",.0f"),
                ("cpu_cores", "CPU cores", ".2f"),
            ),
            ratio=True,
            baseline=EMPTY_SPOOL,
        ),
        Scenario(
            "transport",
            f"HTTP client alone: {s.transport_calls:,} POST /events, {s.transport_concurrency} in flight, fake "
            f"Intercom answering after {s.transport_latency_seconds * 1e3:g} ms",
            (HTTPCORE_ONE_POOL, HTTPCORE_SPLIT, H11, CLIENT),
            transport_run,
            (
                ("client_cpu_ms_per_call", "client CPU ms/call", ".3f"),
                ("calls_per_s", "calls/s", ",.0f"),
                ("client_cpu_s", "client CPU s", ".2f"),
                ("fake_cpu_s", "fake CPU s", ".2f"),
            ),
            ratio=True,
            baseline=HTTPCORE_SPLIT,
        ),
    ]


def _at_rate(rate: float) -> Callable[[Bench, str, str], Run]:
    def run(bench: Bench, kind: str, tag: str) -> Run:
        return latency_run(bench, kind, tag, rate)

    return run


def run_scenario(bench: Bench, scenario: Scenario, progress: Callable[[str], None]) -> dict[str, list[Run]]:
    """Each repeat runs every column once; odd repeats run them in reverse order, so that no column always comes
    right after the same one (a run can leave work behind: the fake still holding answers, the kernel writing)."""
    runs: dict[str, list[Run]] = {target: [] for target in scenario.targets}
    for repeat in range(scenario.repeats or bench.settings.repeats):
        for target in scenario.targets if repeat % 2 == 0 else reversed(scenario.targets):
            started = time.perf_counter()
            result = scenario.run(bench, target, f"{scenario.key}-{target}-{repeat}")
            runs[target].append(result)
            progress(f"{scenario.key} {target} run {repeat + 1}: {time.perf_counter() - started:.1f} s")
    return runs
