"""Measure the sidecar's memory and CPU for the Kubernetes resource requests and limits (README sizing table).

    uv run --frozen python -m tests.deploy.measure_resources

The sidecar is started as its container runs it (`tests/deploy/pod.py`: the image's entrypoint and env plus the
base manifests' env, the token from a file, PID 1 with a read-only root where the machine allows), delivering to the
fake Intercom of `make bench` (`benchmarks.hosts.run_fake`: the users exist already, no rate limit), with events
offered on one gRPC stream by the benchmark's client process (`benchmarks.client.paced_stream`, track events). Its
RSS and CPU (user + system, all threads) are sampled from /proc every 0.25 s. Phases, one after the other:

1. idle for 20 s after start;
2. 150 events/s for 30 s: about what one Intercom app accepts (10,000 calls/min = 166 calls/s, 1 call per track);
3. 1,000 events/s for 30 s, the fake answering at once: a burst (real Intercom would throttle it to ~166/s);
4. 1,000 events/s for 15 s while the fake holds every answer: the send queue fills up to its bound (10,000) and
   the rest is RETRY_LATER: the memory high-water mark of a stalled Intercom;
5. SIGTERM with that full queue: time to exit and exit status (the drain is bounded by the grace, 20 s).

Then, in this process, the memory of the contact cache filled to 100,000 entries (tracemalloc): what a sidecar that
has seen that many users holds on top of the above.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import secrets
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.client import run_client
from benchmarks.hosts import run_fake
from benchmarks.processes import Child
from tests.deploy.manifests import BASE, render
from tests.deploy.pod import container_env, pod_dirs, start_sidecar

_CLOCK_TICKS = 100  # os.sysconf("SC_CLK_TCK") on Linux
_USERS = 1_000


@dataclass
class Sampler:
    """RSS (MiB) and CPU seconds of one process, sampled in a thread."""

    pid: int
    period: float = 0.25
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    """(monotonic time, rss MiB, cpu seconds)"""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> tuple[float, float, float]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return time.monotonic(), rss_kib / 1024, (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except (FileNotFoundError, ProcessLookupError, StopIteration):
                return
            self._stop.wait(self.period)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, start: float, end: float) -> dict[str, float]:
        inside = [s for s in self.samples if start <= s[0] <= end]
        rss = [s[1] for s in inside]
        # CPU per whole second: cores used in each 1-s step (p95 and max say how bursty it is).
        per_second = []
        for first, second in zip(inside, inside[4::4], strict=False):
            per_second.append((second[2] - first[2]) / (second[0] - first[0]))
        elapsed = inside[-1][0] - inside[0][0]
        return {
            "seconds": elapsed,
            "rss_mib_end": rss[-1],
            "rss_mib_max": max(rss),
            "cpu_cores_avg": (inside[-1][2] - inside[0][2]) / elapsed,
            "cpu_cores_p95": _p95(per_second),
            "cpu_cores_max": max(per_second, default=math.nan),
        }


def _p95(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


@contextmanager
def _children() -> Iterator[tuple[Child, Child]]:
    fake = Child("fake-intercom", run_fake, _USERS)
    try:
        client = Child("client", run_client)
        try:
            yield fake, client
        finally:
            client.close()
    finally:
        fake.close()


def measure(idle: float, steady_rate: float, burst_rate: float, load_seconds: float, held_seconds: float) -> None:
    objects = render(BASE)
    results: list[tuple[str, dict[str, Any]]] = []
    with _children() as (fake, client), pod_dirs() as dirs:
        dirs.write_secret("access-token", fake.info["token"])
        dirs.write_secret("identity-secret", "measure-identity-secret")
        env = container_env(objects, dirs, fake.info["url"])
        sidecar = start_sidecar(env, dirs)
        sampler = Sampler(sidecar.pid)
        try:
            print(f"sidecar pid {sidecar.pid}, isolated={sidecar.isolated}, ready in {sidecar.started_seconds:.2f} s")
            print(f"RSS right after start: {sampler.sample()[1]:.1f} MiB", flush=True)

            start = time.monotonic()
            time.sleep(idle)
            results.append((f"idle, {idle:.0f} s after start", sampler.window(start, time.monotonic())))

            for label, rate, seconds in (
                ("steady", steady_rate, load_seconds),
                ("burst", burst_rate, load_seconds),
            ):
                fake.call("reset_ledger")
                start = time.monotonic()
                out = client.call("paced", sidecar.target, rate, seconds, _USERS, f"{label}-{rate}", 5.0)
                window = sampler.window(start, time.monotonic())
                delivered = _wait_delivered(fake, out["statuses"].get("ACCEPTED", 0), timeout=120)
                window.update(statuses=out["statuses"], delivered=delivered, offered=out["offered"])
                results.append((f"{rate:,.0f} events/s for {seconds:.0f} s ({label})", window))
                print(results[-1], flush=True)

            fake.call("set_latency", 3600.0)
            start = time.monotonic()
            out = client.call("paced", sidecar.target, burst_rate, held_seconds, _USERS, "held", 5.0)
            window = sampler.window(start, time.monotonic())
            window.update(statuses=out["statuses"], offered=out["offered"])
            results.append((f"{burst_rate:,.0f} events/s for {held_seconds:.0f} s, Intercom stalled", window))
            print(results[-1], flush=True)

            stopped = time.monotonic()
            sidecar.signal(signal.SIGTERM)
            code = sidecar.wait(timeout=120)
            print(f"SIGTERM with a full queue: exit {code} after {time.monotonic() - stopped:.1f} s", flush=True)
        finally:
            sampler.close()
            sidecar.stop()
            fake.call("set_latency", 0.0)
    print()
    print(_table(results))


def _wait_delivered(fake: Child, accepted: int, timeout: float) -> int:
    """Wait until the fake has at least `accepted` events and no new one for 2 s: the send queue is empty."""
    deadline = time.monotonic() + timeout
    delivered, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_delivered = int(fake.call("counts").get("POST /events 202", 0))
        if now_delivered != delivered:
            delivered, last_change = now_delivered, time.monotonic()
        elif delivered >= accepted and time.monotonic() - last_change >= 2.0:
            break
        time.sleep(0.25)
    return delivered


def _table(results: list[tuple[str, dict[str, Any]]]) -> str:
    rows = [
        "| phase | events acked | RSS MiB (end / max) | CPU cores (avg / p95 of 1 s / max) |",
        "|---|---|---|---|",
    ]
    for label, w in results:
        statuses = w.get("statuses", {})
        acked = ", ".join(f"{count:,} {status}" for status, count in statuses.items()) or "-"
        rows.append(
            f"| {label} | {acked} | {w['rss_mib_end']:.0f} / {w['rss_mib_max']:.0f} "
            f"| {w['cpu_cores_avg']:.2f} / {w['cpu_cores_p95']:.2f} / {w['cpu_cores_max']:.2f} |"
        )
    return "\n".join(rows)


def contact_cache_mib(entries: int = 100_000) -> float:
    """MiB that the contact cache (ids and digests of the last write) takes when filled with `entries` contacts."""
    from intercom_sidecar.intercom.cache import LruCache
    from intercom_sidecar.intercom.contacts import _Known

    tracemalloc.start()
    try:
        cache: LruCache[str, _Known] = LruCache(entries)
        for number in range(entries):
            key = f"user_id:customer-{number:08d}-{secrets.token_hex(8)}"
            digest = hashlib.sha256(key.encode()).digest()
            cache.put(key, _Known(secrets.token_hex(12), digest, 1_700_000_000 + number))
        return tracemalloc.get_traced_memory()[0] / 2**20
    finally:
        tracemalloc.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.measure_resources", description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--steady-rate", type=float, default=150.0)
    parser.add_argument("--burst-rate", type=float, default=1_000.0)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--held-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    measure(args.idle_seconds, args.steady_rate, args.burst_rate, args.load_seconds, args.held_seconds)
    print(f"\ncontact cache with 100,000 entries: {contact_cache_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
