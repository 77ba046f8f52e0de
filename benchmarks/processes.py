"""Child processes that take commands over a pipe: the servers, the fake Intercom and the client.

Each child runs one asyncio loop. It sends one `ready` message (with facts such as its port), then answers
commands `(name, args)` with `("ok", value)` or `("error", traceback)` until it is told `stop`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import traceback
from collections.abc import Awaitable, Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["Child", "Commands", "quiet_logging", "serve_commands"]

Commands = Mapping[str, Callable[..., Awaitable[Any]]]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_context = multiprocessing.get_context("spawn")


class Child:
    """A spawned process running `target(conn, *args)`; `target` is expected to call `serve_commands`."""

    def __init__(self, name: str, target: Callable[..., None], *args: object, start_timeout: float = 60.0) -> None:
        self.name = name
        self._conn, child_conn = _context.Pipe()
        self._process = _context.Process(target=target, args=(child_conn, *args), name=name, daemon=True)
        self._process.start()
        child_conn.close()
        self.info: dict[str, Any] = self._receive(start_timeout)

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def call(self, command: str, *args: object, timeout: float = 120.0) -> Any:
        self._conn.send((command, args))
        return self._receive(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far, all threads (from /proc, 1/CLK_TCK resolution)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def close(self, timeout: float = 30.0) -> Any:
        """Ask the child to stop and wait for it; returns what its `stop` command answered."""
        result = None
        if self._process.is_alive():
            try:
                result = self.call("stop", timeout=timeout)
            finally:
                self._process.join(timeout)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join()
        self._conn.close()
        return result

    def _receive(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            self._process.kill()
            raise TimeoutError(f"{self.name}: no answer within {timeout:.0f} s")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.name}: the process exited (code {self._process.exitcode})") from None
        if kind == "error":
            raise RuntimeError(f"{self.name} failed:\n{value}")
        return value


async def serve_commands(conn: Connection, ready: Mapping[str, Any], commands: Commands) -> None:
    """Announce `ready`, then run commands until `stop` (which must be one of `commands`) has answered."""
    loop = asyncio.get_running_loop()
    conn.send(("ok", dict(ready)))
    while True:
        name, args = await loop.run_in_executor(None, conn.recv)
        try:
            conn.send(("ok", await commands[name](*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
        if name == "stop":
            return


def quiet_logging() -> None:
    """Children log errors only: expected warnings (events abandoned at stop) would garble the table."""
    logging.basicConfig(level=logging.ERROR, format=f"[pid {os.getpid()}] %(name)s: %(message)s")
