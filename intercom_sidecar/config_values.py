"""How one environment variable becomes a typed value: the reader every setting goes through, and the checks it
applies. A value that does not parse or pass its check is a ConfigError naming the variable."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from intercom_sidecar.errors import ConfigError

__all__ = [
    "Reader",
    "any_value",
    "at_most",
    "between",
    "boolean",
    "grpc_address",
    "host_port",
    "is_loopback_host",
    "non_empty",
    "not_negative",
    "one_of",
    "path_or_none",
    "positive",
    "split_listen",
]

_T = TypeVar("_T")


def path_or_none(env: Mapping[str, str], key: str) -> Path | None:
    value = env.get(key, "").strip()
    return Path(value) if value else None


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # not a prefix test: "127.example.com" is a public name
    except ValueError:
        return False


class Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, key: str, kind: Callable[[str], _T], default: _T, check: Callable[[_T], str | None]) -> _T:
        raw = self._env.get(key, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(key, f"must be {_KIND_NAMES.get(kind, 'valid')}, got {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {raw!r}")
        problem = check(value)
        if problem:
            raise ConfigError(key, f"{problem}, got {raw!r}")
        return value


_TRUE = frozenset({"1", "true", "yes", "on"})


_FALSE = frozenset({"0", "false", "no", "off"})


def boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(raw)


_KIND_NAMES: Mapping[object, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    boolean: "true or false",
}


def any_value(value: object) -> str | None:
    return None


def one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def not_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def at_most(limit: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        if value < 0:
            return "must not be negative"
        return None if value <= limit else f"must be at most {limit}"

    return check


def between(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def non_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def grpc_address(value: str) -> str | None:
    """HOST:PORT, or `unix:PATH` (a Unix domain socket; an absolute path is `unix:/run/sidecar/grpc.sock`)."""
    if value.startswith("unix:"):
        path = value.removeprefix("unix:").removeprefix("//")
        return None if path and "\0" not in path else "must be unix:PATH with a path, e.g. unix:/run/sidecar/grpc.sock"
    return host_port(value) and "must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051"


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (as `host_port` accepts it) as (host without IPv6 brackets, port)."""
    host, _, port = listen.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT, e.g. 127.0.0.1:50051"
    return None
