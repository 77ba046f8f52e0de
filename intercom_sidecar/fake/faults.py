"""Fault injection and rate limiting for the fake Intercom. Both are deterministic for a given seed and clock."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = ["DEFAULT_ERRORS", "Faults", "RateLimiter", "ScriptedFault", "Window"]

#: The error code and message the fake answers with for a status when no other is given.
DEFAULT_ERRORS: Final[dict[int, tuple[str, str]]] = {
    400: ("bad_request", "Bad Request"),
    401: ("unauthorized", "Access Token Invalid"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Resource Not Found"),
    409: ("conflict", "Conflict"),
    422: ("parameter_invalid", "Unprocessable Entity"),
    429: ("rate_limit_exceeded", "Rate Limit Exceeded"),
    500: ("server_error", "Server Error"),
    502: ("bad_gateway", "Bad Gateway"),
    503: ("service_unavailable", "Service Unavailable"),
    504: ("gateway_timeout", "Gateway Timeout"),
}


def default_error(status: int) -> tuple[str, str]:
    return DEFAULT_ERRORS.get(status, ("server_error" if status >= 500 else "bad_request", f"HTTP {status}"))


@dataclass(slots=True)
class ScriptedFault:
    """The next ``times`` requests matching ``method`` (``*``: any) and ``path_prefix`` get ``status``.

    ``status`` 0 resets the connection instead of answering. With ``after_processing`` the request is
    carried out first (its effects stay) and only its answer is replaced, like a gateway timing out
    after the backend committed.
    """

    method: str
    path_prefix: str
    status: int
    code: str = ""
    message: str | None = None
    times: int = 1
    after_processing: bool = False

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if self.status != 0 and not 100 <= self.status <= 599:
            raise ValueError(f"invalid status {self.status}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.status and not self.code:
            self.code, default_message = default_error(self.status)
            if self.message is None:
                self.message = default_message

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method == method) and path.startswith(self.path_prefix)


_SETTABLE: Final = ("error_rate", "error_status", "latency", "reset_rate", "throttle_until")


class Faults:
    """What to break, changeable at any time: from Python, or as JSON through ``POST /_fake/faults``."""

    def __init__(self, clock: Callable[[], float], seed: int = 0) -> None:
        self._clock = clock
        self._rng = random.Random(seed)
        self.error_rate = 0.0
        self.error_status = 503
        self.latency = 0.0
        self.reset_rate = 0.0
        self.throttle_until: float | None = None
        self.scripted: list[ScriptedFault] = []

    def clear(self) -> None:
        """Remove every fault."""
        self.error_rate = 0.0
        self.error_status = 503
        self.latency = 0.0
        self.reset_rate = 0.0
        self.throttle_until = None
        self.scripted.clear()

    def script(
        self,
        method: str,
        path_prefix: str,
        status: int,
        *,
        code: str = "",
        message: str | None = None,
        times: int = 1,
        after_processing: bool = False,
    ) -> ScriptedFault:
        """Queue a scripted answer; scripts are consulted in the order they were added."""
        fault = ScriptedFault(method, path_prefix, status, code, message, times, after_processing)
        self.scripted.append(fault)
        return fault

    def throttle_for(self, seconds: float) -> None:
        """A 429 storm: every API request is throttled for ``seconds`` from now."""
        self.throttle_until = self._clock() + seconds

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Apply JSON settings: the attributes above, plus ``throttle_for``, ``scripted`` and ``clear``.

        Everything is checked first: on ``ValueError`` (or ``TypeError``/``KeyError``) nothing changed.
        """
        unknown = set(settings) - {*_SETTABLE, "throttle_for", "scripted", "clear"}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        updates: dict[str, Any] = {}
        for key in ("error_rate", "reset_rate"):
            if key in settings:
                updates[key] = float(settings[key])
                if not 0.0 <= updates[key] <= 1.0:
                    raise ValueError(f"{key} must be between 0 and 1")
        if "error_status" in settings:
            updates["error_status"] = int(settings["error_status"])
            if not 500 <= updates["error_status"] <= 599:
                raise ValueError("error_status must be a 5xx status")
        if "latency" in settings:
            updates["latency"] = float(settings["latency"])
            if updates["latency"] < 0:
                raise ValueError("latency must not be negative")
        if "throttle_until" in settings:
            until = settings["throttle_until"]
            updates["throttle_until"] = None if until is None else float(until)
        if "throttle_for" in settings:
            updates["throttle_until"] = self._clock() + float(settings["throttle_for"])
        scripted = []
        for item in settings.get("scripted") or []:
            if not isinstance(item, Mapping):
                raise ValueError("each scripted fault must be an object")
            scripted.append(
                ScriptedFault(
                    str(item.get("method", "*")),
                    str(item.get("path_prefix", "/")),
                    int(item["status"]),
                    code=str(item.get("code", "")),
                    message=item.get("message"),
                    times=int(item.get("times", 1)),
                    after_processing=bool(item.get("after_processing", False)),
                )
            )
        if settings.get("clear"):
            self.clear()
        for key, value in updates.items():
            setattr(self, key, value)
        self.scripted.extend(scripted)

    def to_json(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "latency": self.latency,
            "reset_rate": self.reset_rate,
            "throttle_until": self.throttle_until,
            "scripted": [asdict(s) for s in self.scripted],
        }

    # decisions, made once per API request -----------------------------------------------------------------

    def throttled(self) -> bool:
        return self.throttle_until is not None and self._clock() < self.throttle_until

    def roll_reset(self) -> bool:
        return self.reset_rate > 0.0 and self._rng.random() < self.reset_rate

    def roll_error(self) -> bool:
        return self.error_rate > 0.0 and self._rng.random() < self.error_rate

    def take_scripted(self, method: str, path: str, *, after_processing: bool) -> ScriptedFault | None:
        """The first matching script for this phase, with one use consumed."""
        for index, fault in enumerate(self.scripted):
            if fault.after_processing == after_processing and fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    del self.scripted[index]
                return fault
        return None


@dataclass(slots=True, frozen=True)
class Window:
    """The rate limit state reported with one answer."""

    allowed: bool
    limit: int
    remaining: int
    reset: int


class RateLimiter:
    """Intercom's fixed-window limit: ``limit`` requests per ``window`` seconds, windows aligned to the clock."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float]) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be positive and window longer than zero")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._start = -math.inf
        self._count = 0

    def reset(self) -> None:
        self._start = -math.inf
        self._count = 0

    def _roll(self) -> float:
        now = self._clock()
        if now >= self._start + self.window:
            self._start = math.floor(now / self.window) * self.window
            self._count = 0
        return self._start + self.window

    def hit(self) -> Window:
        """Count one request; ``allowed`` is False once the window's limit was already reached."""
        end = self._roll()
        allowed = self._count < self.limit
        if allowed:
            self._count += 1
        return Window(allowed, self.limit, self.limit - self._count, math.ceil(end))

    def peek(self) -> Window:
        end = self._roll()
        return Window(self._count < self.limit, self.limit, self.limit - self._count, math.ceil(end))
