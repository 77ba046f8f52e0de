"""The `intercom-sidecar` command: `serve`, `check`, `send`, `dlq`, `fake-intercom`.

The only place that exits the process. An unexpected exception becomes one line on standard error and exit status
70, unless `--debug` asks for the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Sequence

from intercom_sidecar import __version__
from intercom_sidecar.errors import ConfigError

__all__ = ["main"]

_log = logging.getLogger("intercom_sidecar")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging()
    try:
        code: int = asyncio.run(args.run(args))
    except ConfigError as error:
        print(f"intercom-sidecar: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug or an unforeseen failure: one line, unless asked for the traceback
        if args.debug:
            raise
        from intercom_sidecar.telemetry.logs import redact

        print(
            f"intercom-sidecar: unexpected error: {type(error).__name__}: {redact(str(error))} "
            "(rerun as `intercom-sidecar --debug ...` for the traceback)",
            file=sys.stderr,
        )
        return 70  # EX_SOFTWARE
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intercom-sidecar", description="Deliver Segment-spec events to Intercom over gRPC."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the sidecar (settings from the environment)")
    serve.add_argument("--listen", help="gRPC address HOST:PORT (overrides INTERCOM_SIDECAR_LISTEN)")
    serve.add_argument(
        "--fake-intercom",
        action="store_true",
        help="start the embedded fake Intercom on loopback and deliver to it (no Intercom account needed)",
    )
    serve.add_argument(
        "--fake-intercom-port", type=int, default=8089, help="port of the embedded fake Intercom (default 8089)"
    )
    serve.set_defaults(run=_serve)

    from intercom_sidecar.cli import check

    check_parser = commands.add_parser("check", help="validate the configuration and the token against Intercom")
    check.add_arguments(check_parser)
    check_parser.set_defaults(run=check.run)

    from intercom_sidecar.cli import send

    send_parser = commands.add_parser("send", help="send Segment JSON events (NDJSON) and print their acks")
    send.add_arguments(send_parser)
    send_parser.set_defaults(run=send.run)

    from intercom_sidecar.cli import dlq

    dlq_parser = commands.add_parser("dlq", help="list, show, replay or purge dead letters (safe while serving)")
    dlq.add_arguments(dlq_parser)
    dlq_parser.set_defaults(run=dlq.run)

    from intercom_sidecar.fake import cli as fake_cli

    fake = commands.add_parser("fake-intercom", help="run a fake Intercom API on loopback for tests and demos")
    fake_cli.add_arguments(fake)
    fake.set_defaults(run=_run_fake)
    return parser


async def _run_fake(args: argparse.Namespace) -> int:
    from intercom_sidecar.fake import cli as fake_cli

    await _until_signalled(fake_cli.run(args))
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from intercom_sidecar.app import App
    from intercom_sidecar.config import load_config
    from intercom_sidecar.runtime import tune_garbage_collector

    env = dict(os.environ)
    if args.listen:
        env["INTERCOM_SIDECAR_LISTEN"] = args.listen
    fake = None
    if args.fake_intercom:
        from intercom_sidecar.fake import FakeIntercom

        fake = FakeIntercom()
        url = await fake.start("127.0.0.1", args.fake_intercom_port)
        env.update({"INTERCOM_API_URL": url, "INTERCOM_ACCESS_TOKEN": fake.token})
        env.pop("INTERCOM_ACCESS_TOKEN_FILE", None)
        # The fake keeps its state in memory, so a durable spool would outlive what it delivered to (and dedupe
        # the demo's events on the next run): unless told otherwise, the spool is in memory too.
        env.setdefault("INTERCOM_SIDECAR_SPOOL", "memory")
        _log.warning(
            "Delivering to the embedded fake Intercom at `%s`, not to Intercom (see `%s/_fake/state`).", url, url
        )
    try:
        app = App(load_config(env))
        await app.start()
        tune_garbage_collector()
        try:
            await _until_signalled(app.wait_stopped())
        finally:
            await app.stop()
    finally:
        if fake is not None:
            await fake.stop()
    return 0


async def _until_signalled(work: Awaitable[object]) -> None:
    """Run until `work` (an awaitable) ends or SIGTERM/SIGINT arrives."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    task = asyncio.ensure_future(work)
    waiter = asyncio.create_task(signalled.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        else:
            task.result()
    if signalled.is_set():
        _log.info("Stopping on signal.")


def _configure_logging() -> None:
    # JSON lines (text on a terminal), trace ids, redaction, httpx held at WARNING: see telemetry/logs.py.
    from intercom_sidecar.telemetry.logs import configure_logging

    try:
        configure_logging(os.environ, sys.stderr)
    except ConfigError as error:  # before asyncio.run, so main's handler does not see it: same message, same status
        print(f"intercom-sidecar: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
