"""Structured logs: JSON lines (readable text on a terminal), trace ids, and secrets redacted as a last defence.

`configure_logging(env)` installs one handler on the root logger, writing to standard error:

- **Format** (`INTERCOM_SIDECAR_LOG_FORMAT`): `json` writes one object per line, `text` one readable line (plus the
  traceback), `auto` (the default) is `text` when the stream is a terminal and `json` otherwise. A JSON line::

      {"time": "2025-01-02T03:04:05.678Z", "level": "INFO", "logger": "intercom_sidecar.app",
       "message": "Listening for gRPC on `127.0.0.1:50051`.", "trace_id": "4bf9...", "span_id": "00f0...",
       ...fields given with `extra=`, "exception": "Traceback (most recent call last): ..."}

- **Level** (`INTERCOM_SIDECAR_LOG_LEVEL`): DEBUG, INFO (the default), WARNING or ERROR. httpx and httpcore, which
  log every request at INFO, are held at WARNING or above.
- **Trace context**: a line written while an OpenTelemetry span is current carries its `trace_id` (32 hex digits)
  and `span_id` (16); with no valid current span both are left out.
- **Redaction**: every value given to `register_secret` (the access token and the identity secret, by whoever
  loads them) and every `Bearer <token>` is replaced by `[REDACTED]` in the message, its arguments, the extra
  fields, the traceback and finally the whole line. This is the last line of defence: code must still not log
  secrets or personal data (see `telemetry/pii.py`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

from intercom_sidecar.errors import ConfigError

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "TraceContextFilter",
    "configure_logging",
    "redact",
    "register_secret",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text", "auto")
REDACTED = "[REDACTED]"

_QUIET_LOGGERS = ("httpx", "httpcore")
"""Libraries that log every request at INFO: per-event logging above DEBUG is not wanted."""

_BEARER = r"(?P<bearer>\b(?i:bearer)\s+)[^\s'\",;]+"
"""`Bearer <credential>` in any case; the credential runs to the next space, quote, comma or semicolon."""

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "trace_id",
    "span_id",
}
"""A record's own attributes; any other attribute came from `extra=` and is written as a field."""


class _SecretRegistry:
    """Values to redact. Registering is rare (start-up, token rotation) and locked; redacting reads one pattern."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern = re.compile(_BEARER)

    def add(self, value: str) -> None:
        if not value:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            # Longest first, so a secret that starts another one cannot leave the other's tail behind.
            secrets = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join([_BEARER, *map(re.escape, secrets)]))

    def redact(self, text: str) -> str:
        return self._pattern.sub(_replacement, text)


def _replacement(match: re.Match[str]) -> str:
    return (match.group("bearer") or "") + REDACTED


_SECRETS = _SecretRegistry()


def register_secret(value: str) -> None:
    """Redact `value` from every log record from now on (and from `redact`). Empty values are ignored.

    Call it wherever a secret is read: the access token (also each rotated one), the identity secret.
    """
    _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret and every `Bearer <token>` replaced by `[REDACTED]`.

    For error strings that leave the process by another way than logging (span events, ack reasons).
    """
    return _SECRETS.redact(text)


class RedactingFilter(logging.Filter):
    """Redacts the message, its arguments, string extra fields, the traceback and the stack of each record.

    The arguments are merged into the message (`args` becomes empty), so no formatter can print them raw; the
    traceback is formatted here, redacted, and cached in `exc_text`, which formatters print instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: keep the message, drop the arguments
            message = f"{record.msg} (the log call's arguments did not fit this message)"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in _extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class TraceContextFilter(logging.Filter):
    """Sets `trace_id` and `span_id` (lower-case hex) on records written while a valid span is current."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the message or traceback are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_trace_fields(record))
        for key, value in _extra_fields(record).items():
            line.setdefault(key, value)  # the fields above win over an extra field of the same name
        if exception := _exception_text(self, record):
            line["exception"] = exception
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(line, ensure_ascii=False, default=_fallback))


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message> trace_id=... span_id=... key=value`, then the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {**_trace_fields(record), **_extra_fields(record)}
        parts = [f"{_utc_time(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"]
        parts += [f"{key}={_text_value(value)}" for key, value in fields.items()]
        text = " ".join(parts)
        if exception := _exception_text(self, record):
            text += "\n" + exception
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return redact(text)


class _SidecarHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs (and replaces when called again)."""

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's own report prints the record's arguments unredacted: say only what failed.
        if logging.raiseExceptions and sys.stderr is not None:
            error = sys.exc_info()[1]
            sys.stderr.write(f"Could not write a log record of `{record.name}`: {type(error).__name__}.\n")


def configure_logging(env: Mapping[str, str], stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (standard error by default), formatted and filtered as the module says.

    Raises ConfigError, naming the setting, for a bad `INTERCOM_SIDECAR_LOG_LEVEL` or `INTERCOM_SIDECAR_LOG_FORMAT`.
    Calling it again replaces the handler it installed before; other handlers on the root logger are left alone.
    """
    level = _read_choice(env, "INTERCOM_SIDECAR_LOG_LEVEL", LOG_LEVELS, "INFO", str.upper)
    form = _read_choice(env, "INTERCOM_SIDECAR_LOG_FORMAT", LOG_FORMATS, "auto", str.lower)
    stream = sys.stderr if stream is None else stream
    if form == "auto":
        form = "text" if _is_terminal(stream) else "json"
    handler = _SidecarHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(TextFormatter() if form == "text" else JsonFormatter())
    handler.addFilter(TraceContextFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SidecarHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level]))


def _read_choice(
    env: Mapping[str, str], key: str, choices: tuple[str, ...], default: str, case: Callable[[str], str]
) -> str:
    raw = env.get(key, "").strip()
    value = case(raw) if raw else default
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _utc_time(record: logging.LogRecord) -> str:
    """ISO-8601 in UTC with milliseconds: `2025-01-02T03:04:05.678Z`."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _trace_fields(record: logging.LogRecord) -> dict[str, str]:
    trace_id, span_id = getattr(record, "trace_id", None), getattr(record, "span_id", None)
    return {"trace_id": trace_id, "span_id": span_id} if trace_id and span_id else {}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS and key[:1] != "_"}


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or ""


def _fallback(value: object) -> str:
    """JSON for what `json` cannot encode (a Path, an exception, a datetime): its `str`."""
    return str(value)


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or any(c.isspace() or c in "\"'=" for c in text) else text
