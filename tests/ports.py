"""Loopback ports for tests that need nothing to listen."""

from __future__ import annotations

import socket

__all__ = ["closed_loopback_port"]


def closed_loopback_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago and has nothing listening on it: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
