"""Settings as typed, validated values with defaults.

Every setting is read from one environment variable (flags override a few of them, see `__main__`), checked
once at start-up, and documented in the README's configuration table. Errors name the variable to fix.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from intercom_sidecar.errors import ConfigError

__all__ = [
    "PAGE_MODES",
    "REGION_URLS",
    "SPOOL_KINDS",
    "Config",
    "IntercomConfig",
    "LimitsConfig",
    "MappingConfig",
    "QueueConfig",
    "RetryConfig",
    "Secret",
    "ServerConfig",
    "SpoolConfig",
    "default_spool_directory",
    "load_config",
    "read_token_file",
]

REGION_URLS: Mapping[str, str] = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}

_T = TypeVar("_T")


class Secret:
    """A string that never shows itself in `repr`, `str`, logs or tracebacks. Read it with `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class IntercomConfig:
    token: Secret
    """Intercom access token (`INTERCOM_ACCESS_TOKEN`, or the contents of `INTERCOM_ACCESS_TOKEN_FILE`)."""
    base_url: str = REGION_URLS["us"]
    """From `INTERCOM_API_URL`, else from `INTERCOM_REGION` (us, eu, au)."""
    api_version: str = "2.16"
    token_file: Path | None = None
    """`INTERCOM_ACCESS_TOKEN_FILE`, re-read while running: a rotated token is picked up without a restart."""
    timeout_seconds: float = 10.0
    max_connections: int = 16
    create_attributes: bool = True
    """Create custom data attributes Intercom does not have yet; when off, such values are left out."""
    cache_max_entries: int = 100_000
    """Per cache: contact ids, company ids, attachments, last writes."""
    last_seen_resolution_seconds: float = 3600.0
    """An otherwise unchanged identify is sent again only once last seen moved by this much."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    health_listen: str = ""
    metrics_listen: str = ""
    """An address serving Prometheus metrics at `/metrics` (e.g. 0.0.0.0:9464); empty for none."""
    """A second address serving only grpc.health.v1 (for Kubernetes probes on the pod IP); empty for none."""
    shutdown_grace_seconds: float = 20.0
    max_message_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class QueueConfig:
    max_events: int = 10_000
    workers: int = 16
    full_retry_after_seconds: float = 1.0


SPOOL_KINDS = ("sqlite", "memory")


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    kind: str = "sqlite"
    """`sqlite` (durable, the default) or `memory` (lost on a crash)."""
    directory: Path = field(default_factory=lambda: default_spool_directory(os.environ))
    max_bytes: int = 256 * 1024 * 1024
    """Payload bytes of pending events; with QueueConfig.max_events, the spool's bound."""
    dedupe_window_seconds: float = 24 * 3600.0


def default_spool_directory(env: Mapping[str, str]) -> Path:
    state = env.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state else Path.home() / ".local" / "state"
    return base / "intercom-sidecar" / "spool"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 60.0
    max_elapsed_seconds: float = 3 * 3600.0
    """The total retry budget of one event; after it the event is rejected."""


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_event_bytes: int = 32 * 1024
    """Segment's own limit for one call."""
    max_future_seconds: float = 24 * 3600.0
    """How far in the future an event's timestamp may lie (clock skew allowance)."""
    max_past_seconds: float = 3650 * 24 * 3600.0
    """How far in the past an event's timestamp may lie; 0 for no limit. Ten years lets backfills through and
    stops the usual client bugs (a zero timestamp is 1970; seconds read as milliseconds is 1970 too)."""
    max_events_per_send: int = 1000
    """Events in one `Send` call; more and the whole call is refused (INVALID_ARGUMENT), nothing is taken."""
    max_depth: int = 10
    """Nesting of objects and lists in an event's traits, properties, context or integrations (the top object is 1)."""
    max_keys: int = 1000
    """Keys of all objects in one event's traits/properties, context and integrations together."""
    max_string_chars: int = 10_000
    """Characters of one string (or key) in those objects and of the call's own strings (track event, page name)."""


PAGE_MODES = ("ignore", "event", "last_seen")


@dataclass(frozen=True, slots=True)
class MappingConfig:
    page_mode: str = "ignore"
    """page/screen: `ignore` (FILTERED), `event` (a data event `Viewed <name> Page|Screen`) or `last_seen`."""
    leads: bool = False
    """Anonymous identifies create or update a lead keyed by anonymous_id; alias merges it into the user."""
    create_missing_contacts: bool = True
    """A data event Intercom answers with 404 "User Not Found" creates the contact and is sent again."""
    identity_secret: Secret | None = None
    """Intercom's identity-verification secret: `integrations.Intercom.user_hash` must match the userId."""


@dataclass(frozen=True, slots=True)
class Config:
    intercom: IntercomConfig
    server: ServerConfig = field(default_factory=ServerConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build and validate the whole configuration from environment variables."""
    env = os.environ if env is None else env
    reader = _Reader(env)
    config = Config(
        intercom=IntercomConfig(
            token=_read_token(env),
            token_file=Path(env["INTERCOM_ACCESS_TOKEN_FILE"].strip())
            if env.get("INTERCOM_ACCESS_TOKEN_FILE", "").strip()
            else None,
            base_url=_read_base_url(env),
            api_version=reader.get("INTERCOM_API_VERSION", str, "2.16", _non_empty),
            timeout_seconds=reader.get("INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS", float, 10.0, _positive),
            max_connections=reader.get("INTERCOM_SIDECAR_HTTP_MAX_CONNECTIONS", int, 16, _positive),
            create_attributes=reader.get("INTERCOM_SIDECAR_CREATE_ATTRIBUTES", _boolean, True, _any),
            cache_max_entries=reader.get("INTERCOM_SIDECAR_CACHE_MAX_ENTRIES", int, 100_000, _positive),
            last_seen_resolution_seconds=reader.get(
                "INTERCOM_SIDECAR_LAST_SEEN_RESOLUTION_SECONDS", float, 3600.0, _not_negative
            ),
        ),
        server=ServerConfig(
            listen=reader.get("INTERCOM_SIDECAR_LISTEN", str, "127.0.0.1:50051", _host_port),
            health_listen=reader.get("INTERCOM_SIDECAR_HEALTH_LISTEN", str, "", _host_port),
            metrics_listen=reader.get("INTERCOM_SIDECAR_METRICS_LISTEN", str, "", _host_port),
            shutdown_grace_seconds=reader.get("INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS", float, 20.0, _positive),
            max_message_bytes=reader.get("INTERCOM_SIDECAR_MAX_MESSAGE_BYTES", int, 8 * 1024 * 1024, _positive),
        ),
        queue=QueueConfig(
            max_events=reader.get("INTERCOM_SIDECAR_QUEUE_MAX_EVENTS", int, 10_000, _positive),
            workers=reader.get("INTERCOM_SIDECAR_WORKERS", int, 16, _positive),
            full_retry_after_seconds=reader.get(
                "INTERCOM_SIDECAR_QUEUE_FULL_RETRY_AFTER_SECONDS", float, 1.0, _positive
            ),
        ),
        retry=RetryConfig(
            initial_backoff_seconds=reader.get("INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS", float, 0.5, _positive),
            max_backoff_seconds=reader.get("INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS", float, 60.0, _positive),
            max_elapsed_seconds=reader.get("INTERCOM_SIDECAR_RETRY_MAX_ELAPSED_SECONDS", float, 3 * 3600.0, _positive),
        ),
        limits=LimitsConfig(
            max_event_bytes=reader.get("INTERCOM_SIDECAR_MAX_EVENT_BYTES", int, 32 * 1024, _positive),
            max_future_seconds=reader.get("INTERCOM_SIDECAR_MAX_FUTURE_SECONDS", float, 24 * 3600.0, _not_negative),
            max_past_seconds=reader.get("INTERCOM_SIDECAR_MAX_PAST_SECONDS", float, 3650 * 24 * 3600.0, _not_negative),
            max_events_per_send=reader.get("INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND", int, 1000, _positive),
            max_depth=reader.get("INTERCOM_SIDECAR_MAX_DEPTH", int, 10, _between(1, _MAX_PROTOBUF_DEPTH)),
            max_keys=reader.get("INTERCOM_SIDECAR_MAX_KEYS", int, 1000, _positive),
            max_string_chars=reader.get("INTERCOM_SIDECAR_MAX_STRING_CHARS", int, 10_000, _positive),
        ),
        spool=SpoolConfig(
            kind=reader.get("INTERCOM_SIDECAR_SPOOL", str, "sqlite", _one_of(SPOOL_KINDS)),
            directory=reader.get("INTERCOM_SIDECAR_SPOOL_DIR", Path, default_spool_directory(env), _any),
            max_bytes=reader.get("INTERCOM_SIDECAR_SPOOL_MAX_BYTES", int, 256 * 1024 * 1024, _positive),
            dedupe_window_seconds=reader.get(
                "INTERCOM_SIDECAR_DEDUPE_WINDOW_SECONDS", float, 24 * 3600.0, _not_negative
            ),
        ),
        mapping=MappingConfig(
            page_mode=reader.get("INTERCOM_SIDECAR_PAGE_MODE", str, "ignore", _one_of(PAGE_MODES)),
            leads=reader.get("INTERCOM_SIDECAR_LEADS", _boolean, False, _any),
            create_missing_contacts=reader.get("INTERCOM_SIDECAR_CREATE_MISSING_CONTACTS", _boolean, True, _any),
            identity_secret=_read_secret(env, "INTERCOM_IDENTITY_SECRET", "INTERCOM_IDENTITY_SECRET_FILE"),
        ),
    )
    if config.retry.max_backoff_seconds < config.retry.initial_backoff_seconds:
        raise ConfigError(
            "INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS",
            "must be at least INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS",
        )
    if config.spool.max_bytes < config.limits.max_event_bytes:
        raise ConfigError("INTERCOM_SIDECAR_SPOOL_MAX_BYTES", "must be at least INTERCOM_SIDECAR_MAX_EVENT_BYTES")
    if config.limits.max_event_bytes > config.server.max_message_bytes:
        raise ConfigError("INTERCOM_SIDECAR_MAX_EVENT_BYTES", "must not exceed INTERCOM_SIDECAR_MAX_MESSAGE_BYTES")
    return config


def _read_secret(env: Mapping[str, str], key: str, file_key: str) -> Secret | None:
    """The secret from the file named by `file_key` (which wins), else from `key`; None when neither is set."""
    path = env.get(file_key, "").strip()
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(file_key, f"cannot read {path!r}: {exc.strerror}") from None
        if not value:
            raise ConfigError(file_key, f"{path!r} is empty")
        return _checked_secret(file_key, value)
    value = env.get(key, "").strip()
    return _checked_secret(key, value) if value else None


def _checked_secret(key: str, value: str) -> Secret:
    """Tokens are printable ASCII without spaces; anything else (a second line, say) would end up in an HTTP
    header error that quotes it, so it is refused here, without showing it."""
    if not all("\x21" <= char <= "\x7e" for char in value):
        raise ConfigError(key, "contains spaces, control or non-ASCII characters (is there a second line?)")
    return Secret(value)


def read_token_file(path: Path) -> Secret:
    """The token in `path` now (for re-reading a rotated token file); ConfigError if it is unusable."""
    return _read_token({"INTERCOM_ACCESS_TOKEN_FILE": str(path)})


def _read_token(env: Mapping[str, str]) -> Secret:
    token = _read_secret(env, "INTERCOM_ACCESS_TOKEN", "INTERCOM_ACCESS_TOKEN_FILE")
    if token is None:
        raise ConfigError(
            "INTERCOM_ACCESS_TOKEN",
            "is not set (nor INTERCOM_ACCESS_TOKEN_FILE); to try the sidecar without an Intercom account, "
            "run `intercom-sidecar serve --fake-intercom` (or `make run`)",
        )
    return token


def _read_base_url(env: Mapping[str, str]) -> str:
    url = env.get("INTERCOM_API_URL", "").strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("INTERCOM_API_URL", f"must be an http(s) URL, got {url!r}")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ConfigError("INTERCOM_API_URL", "plain http is only allowed for loopback addresses; use https")
        return url.rstrip("/")
    region = env.get("INTERCOM_REGION", "us").strip().lower() or "us"
    if region not in REGION_URLS:
        raise ConfigError("INTERCOM_REGION", f"must be one of {', '.join(REGION_URLS)}, got {region!r}")
    return REGION_URLS[region]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # not a prefix test: "127.example.com" is a public name
    except ValueError:
        return False


class _Reader:
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


def _boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(raw)


_KIND_NAMES: Mapping[object, str] = {
    int: "an integer",
    float: "a number",
    str: "a string",
    _boolean: "true or false",
}


def _any(value: object) -> str | None:
    return None


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


_MAX_PROTOBUF_DEPTH = 30
"""protobuf's parser stops at 100 nested messages; a Struct level costs 3 of them (Struct, map entry, Value),
and an event's Struct starts 2 deep (Event, call), so about 30 levels is the most any event can carry."""


def _between(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def _non_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT, e.g. 127.0.0.1:50051"
    return None
