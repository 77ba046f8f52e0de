"""`python -m benchmarks` (what `make bench` runs): the sidecar next to a bare grpc.aio ceiling, medians of 3 runs
(9 for tracing's cost, whose target lies within a few points of what it measures).

Prints a table and writes every run to `benchmarks/results/latest.json`. `--profile` instead runs the sidecar
under cProfile (Send with deliveries held, then a delivery run) and prints its top functions; those numbers are not
benchmarks (the profiler slows Python code down several times).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.calls import CallsSettings, format_calls, measure_calls
from benchmarks.decode_floor import format_floor, measure_floor
from benchmarks.hosts import sidecar_config
from benchmarks.report import format_scenario, machine_facts, summarize, write_json
from benchmarks.scenarios import HELD, SIDECAR, Bench, Settings, delivery_run, run_scenario, scenarios, send_run

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
COMMAND = "make bench  (uv run --frozen python -m benchmarks)"


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--repeats", type=int, default=Settings().repeats, help="runs per measurement (median)")
    parser.add_argument(
        "--tracing-repeats",
        type=int,
        default=Settings().tracing_repeats,
        help="runs per column of the tracing scenario (median)",
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the events, 1 run: to check the harness")
    parser.add_argument("--profile", action="store_true", help="profile the sidecar instead of benchmarking")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY",
        help="run only this scenario (stream, send, tracing, latency, delivery, transport, calls, floor, ...)",
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    if not args.quick:
        return Settings(repeats=args.repeats, tracing_repeats=args.tracing_repeats)
    s = Settings()
    return Settings(
        repeats=1,
        tracing_repeats=1,
        users=100,
        stream_events=s.stream_events // 10,
        send_events=s.send_events // 10,
        paced_seconds=1.0,
        delivery_events=s.delivery_events // 10,
        transport_calls=s.transport_calls // 10,
        calls_events_per_hour=s.calls_events_per_hour // 10,
        backlog_events=s.backlog_events // 10,
        backlog_seconds=5.0,
    )


def _config_facts(bench: Bench) -> dict[str, Any]:
    config = sidecar_config(bench.fake.info["url"], "redacted")
    return {
        "queue": dataclasses.asdict(config.queue),
        "intercom_max_connections": config.intercom.max_connections,
        "server": dataclasses.asdict(config.server),
    }


def _profile(bench: Bench) -> None:
    """Intake alone (Send while the fake holds deliveries), then delivery (Send, then until all delivered)."""
    bench.profile = True
    for name, run, target in (("send, delivery held", send_run, HELD), ("delivery", delivery_run, SIDECAR)):
        result = run(bench, target, f"profile-{target}")
        print(f"\n=== cProfile of the sidecar process, {name} run (slowed by the profiler) ===")
        print({key: value for key, value in result.items() if isinstance(value, int | float | dict)})
        print(bench.profiles.pop())


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    settings = _settings(args)
    started = time.perf_counter()
    machine = machine_facts()
    print(f"command: {COMMAND}")
    print(
        f"machine: nproc={machine['nproc']}, {machine['cpu_model'] or 'unknown CPU'}, {machine['python']}, "
        f"grpcio {machine['grpcio']}, protobuf {machine['protobuf']}, httpx {machine['httpx']}"
    )
    print(
        "setup: 3 processes on 127.0.0.1 (ports 0): the client; the server under test (a fresh ceiling or sidecar "
        "process per run); the fake Intercom (rate limit off, contacts pre-created). CPU from /proc/<pid>/stat."
    )
    bench = Bench(settings)
    try:
        if args.profile:
            _profile(bench)
            return 0
        results: dict[str, Any] = {}
        tables = []
        chosen = [scenario for scenario in scenarios(settings) if not args.only or scenario.key in args.only]
        for number, scenario in enumerate(chosen, start=1):
            summary = summarize(scenario, run_scenario(bench, scenario, _progress))
            results[scenario.key] = summary
            tables.append(format_scenario(number, scenario, summary))
        if not args.only or "calls" in args.only:
            _progress("calls per event")
            calls_settings = CallsSettings(users=settings.users, events_per_hour=settings.calls_events_per_hour)
            results["calls"] = measure_calls(calls_settings)
            tables.append(format_calls(len(tables) + 1, results["calls"], calls_settings))
        if not args.only or "floor" in args.only:
            _progress("the floor under intake")
            results["floor"] = measure_floor()
            tables.append(format_floor(len(tables) + 1, results["floor"]))
        config = _config_facts(bench)
    finally:
        bench.close()
    elapsed = time.perf_counter() - started
    print(
        f"sidecar: its defaults ({config['queue']['workers']} workers, {config['intercom_max_connections']} HTTP "
        f"connections), delivery window {config['queue']['max_events']:,} events; tracing on, not exported"
    )
    print(
        f"medians of {settings.repeats} run(s) ({settings.tracing_repeats} for tracing); [each run] in brackets; "
        "µs and ms are per event / per call\n"
    )
    print("\n\n".join(tables))
    write_json(
        RESULTS,
        {
            "command": COMMAND,
            "argv": sys.argv,
            "machine": machine,
            "settings": dataclasses.asdict(settings),
            "sidecar_config": config,
            "scenarios": results,
            "elapsed_seconds": elapsed,
        },
    )
    print(f"\nwrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    print(f"elapsed: {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
