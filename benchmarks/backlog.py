"""Memory with a large backlog: a sidecar started on a spool holding N undelivered events, delivering them.

The child process fills a fresh SQLite spool with N spooled track events (as intake stores them), then starts the
sidecar on it against the fake Intercom and answers `memory` (VmRSS and VmHWM, the peak, from /proc/self/status)
and `pending` while it delivers. With N = 0 it is the same sidecar on an empty spool: the baseline.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from pathlib import Path

from benchmarks.events import track_events
from benchmarks.hosts import sidecar_config
from benchmarks.processes import Commands, quiet_logging, serve_commands
from intercom_sidecar.app import App
from intercom_sidecar.config import QueueConfig, SpoolConfig
from intercom_sidecar.delivery.spool import SpoolEntry
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.runtime import tune_garbage_collector
from intercom_sidecar.telemetry.setup import make_tracer_provider

__all__ = ["fill_spool", "memory_kib", "run_backlog_sidecar"]

_FILL_BATCH = 10_000
_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def memory_kib() -> dict[str, int]:
    """This process's resident set now and at its peak, in KiB."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return {"rss_kib": fields["VmRSS"], "peak_rss_kib": fields["VmHWM"]}


async def _fill(directory: Path, events: int, users: int) -> float:
    """Spool `events` track events (payloads as intake writes them); seconds taken."""
    started = time.perf_counter()
    spool = SqliteSpool(directory, max_events=events + 1, max_bytes=64 * 1024**3)
    await spool.open()
    template = track_events(_FILL_BATCH, users, "backlog")
    for start in range(0, events, _FILL_BATCH):
        entries = []
        for offset, event in enumerate(template[: min(_FILL_BATCH, events - start)]):
            event.message_id = f"backlog-{start + offset}"
            event.trace_context["traceparent"] = _TRACEPARENT
            entries.append(
                SpoolEntry(event.message_id, event.user_id, event.SerializeToString(), "0" * 32, time.time())
            )
        await spool.append(entries)
    await spool.close()
    return time.perf_counter() - started


def fill_spool(directory: Path, events: int, users: int) -> float:
    """Process entry point (run it in a process of its own, so its memory is not the sidecar's): fill a spool."""
    return asyncio.run(_fill(directory, events, users))


async def _serve(conn: Connection, fake_url: str, token: str, spool_dir: str, events: int) -> None:
    directory = Path(spool_dir)
    config = sidecar_config(fake_url, token, directory).replace(
        queue=QueueConfig(),  # the default delivery window
        spool=SpoolConfig(kind="sqlite", directory=directory, max_events=events + 1_000_000, max_bytes=8 * 1024**3),
    )
    started = time.perf_counter()
    app = App(config, tracer_provider=make_tracer_provider({}))
    await app.start()
    tune_garbage_collector()  # as `intercom-sidecar serve` does
    start_seconds = time.perf_counter() - started

    async def memory() -> dict[str, int]:
        return memory_kib()

    async def pending() -> int:
        assert app.spool is not None
        return app.spool.depth()[0]

    async def stop() -> None:
        await app.stop()

    commands: Commands = {"memory": memory, "pending": pending, "stop": stop}
    await serve_commands(conn, {"start_seconds": start_seconds, **memory_kib()}, commands)


def run_backlog_sidecar(conn: Connection, fake_url: str, token: str, spool_dir: str, events: int) -> None:
    """Process entry point: the sidecar on the spool in `spool_dir` (holding `events` pending events)."""
    quiet_logging()
    asyncio.run(_serve(conn, fake_url, token, spool_dir, events))
