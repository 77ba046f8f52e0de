"""Command line for serving the fake Intercom (wired in as ``intercom-sidecar fake-intercom``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from intercom_sidecar.fake.server import FakeIntercom

__all__ = ["add_arguments", "run"]


def _attribute(text: str) -> tuple[str, str, str]:
    name, _, rest = text.partition(":")
    model, _, data_type = rest.partition(":")
    if not name or not model:
        raise argparse.ArgumentTypeError("expected NAME:MODEL[:TYPE], e.g. plan:contact:string")
    return name, model, data_type or "string"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fake's flags to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback only)")
    parser.add_argument("--port", type=int, default=8089, help="port to listen on (0: any free port)")
    parser.add_argument("--token", default="fake-token", help="the access token clients must send")
    parser.add_argument("--limit-per-window", type=int, default=1666, help="requests allowed per rate-limit window")
    parser.add_argument("--window-seconds", type=float, default=10.0, help="rate-limit window length")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids and fault decisions")
    parser.add_argument(
        "--data-attribute",
        action="append",
        default=[],
        type=_attribute,
        metavar="NAME:MODEL[:TYPE]",
        help="create a custom data attribute at start (repeatable); MODEL is contact or company",
    )


async def run(args: argparse.Namespace) -> None:
    """Serve until cancelled; print one line saying where."""
    fake = FakeIntercom(
        token=args.token,
        limit_per_window=args.limit_per_window,
        window_seconds=args.window_seconds,
        seed=args.seed,
    )
    for name, model, data_type in args.data_attribute:
        fake.add_data_attribute(name, model, data_type)
    url = await fake.start(args.host, args.port)
    print(f"fake Intercom listening on {url}", flush=True, file=sys.stdout)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()
