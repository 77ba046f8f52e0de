"""Settings as typed, validated values with defaults.

Every setting is read from one environment variable (flags override a few of them, see `__main__`), checked
once at start-up, and documented in the README's configuration table. Errors name the variable to fix.
"""

from __future__ import annotations

import base64
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
    "DEAD_LETTER_PAYLOADS",
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
    "SegmentConfig",
    "ServerConfig",
    "SpoolConfig",
    "TlsConfig",
    "default_spool_directory",
    "is_loopback_host",
    "load_config",
    "read_auth_token_file",
    "read_dead_letter_key",
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
    max_connections: int = 64
    create_attributes: bool = True
    """Create custom data attributes Intercom does not have yet; when off, such values are left out."""
    cache_max_entries: int = 100_000
    """Per cache: contact ids, company ids, attachments, last writes."""
    last_seen_resolution_seconds: float = 3600.0
    """An otherwise unchanged identify is sent again only once last seen moved by this much."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for the gRPC API, from PEM files that are re-read when they change (see `server/tls.py`)."""

    cert_file: Path
    """`INTERCOM_SIDECAR_TLS_CERT_FILE`: the server certificate chain."""
    key_file: Path
    """`INTERCOM_SIDECAR_TLS_KEY_FILE`: its private key (unencrypted)."""
    client_ca_file: Path | None = None
    """`INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE`: when set, clients must show a certificate it signed (mutual TLS)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    health_listen: str = ""
    metrics_listen: str = ""
    """An address serving Prometheus metrics at `/metrics` (e.g. 0.0.0.0:9464); empty for none."""
    """A second address serving only grpc.health.v1 (for Kubernetes probes on the pod IP); empty for none."""
    shutdown_grace_seconds: float = 20.0
    max_message_bytes: int = 8 * 1024 * 1024
    tls: TlsConfig | None = None
    insecure_listen: bool = False
    """Allow plain text on a `listen` address other than loopback or a Unix socket, and a non-loopback
    `admin_listen` (both refused otherwise)."""
    reflection: bool = True
    auth_token: Secret | None = None
    """When set, every call but health must carry `authorization: Bearer <token>` (`server/auth.py`)."""
    auth_token_file: Path | None = None
    """`INTERCOM_SIDECAR_AUTH_TOKEN_FILE`, re-read when it changes: a rotated token is used without a restart."""
    admin_listen: str = ""
    """The event view and its JSON API (plus `/metrics`); loopback only unless `insecure_listen`. Empty for none.
    `load_config` defaults it to 127.0.0.1:8090; a config built in code (tests, embedding) has none unless asked."""
    admin_recent_events: int = 200
    """How many recent events the event view keeps in memory; 0 records none."""


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    """The Segment-compatible HTTP tracking API (`server/segment_http.py`)."""

    listen: str = "127.0.0.1:8088"
    """Where `/v1/track`, `/v1/batch`, ... are served; empty for none. Off loopback only with write keys."""
    write_keys: tuple[Secret, ...] = ()
    """Accepted write keys (the HTTP basic auth user name); none accepts any caller, which only loopback allows."""


@dataclass(frozen=True, slots=True)
class QueueConfig:
    max_events: int = 10_000
    """The delivery window: events held in memory for delivery; a backlog beyond it waits in the spool only."""
    workers: int = 64
    full_retry_after_seconds: float = 1.0


SPOOL_KINDS = ("sqlite", "memory")
DEAD_LETTER_PAYLOADS = ("keep", "drop", "encrypt")


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    kind: str = "sqlite"
    """`sqlite` (durable, the default) or `memory` (lost on a crash)."""
    directory: Path = field(default_factory=lambda: default_spool_directory(os.environ))
    max_events: int = 1_000_000
    """Pending events; with `max_bytes`, the spool's bound (a full spool answers RETRY_LATER)."""
    max_bytes: int = 256 * 1024 * 1024
    """Payload bytes of pending events."""
    dedupe_window_seconds: float = 24 * 3600.0
    dead_letter_payloads: str = "keep"
    """What a dead letter keeps of its event: `keep` (replayable), `drop` (no payload) or `encrypt` (AES-256-GCM)."""
    dead_letter_key: Secret | None = None
    """The base64 AES-256 key from `INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE`; required by `encrypt`."""


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
    segment: SegmentConfig = field(default_factory=SegmentConfig)
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
            max_connections=reader.get("INTERCOM_SIDECAR_HTTP_MAX_CONNECTIONS", int, 64, _positive),
            create_attributes=reader.get("INTERCOM_SIDECAR_CREATE_ATTRIBUTES", _boolean, True, _any),
            cache_max_entries=reader.get("INTERCOM_SIDECAR_CACHE_MAX_ENTRIES", int, 100_000, _positive),
            last_seen_resolution_seconds=reader.get(
                "INTERCOM_SIDECAR_LAST_SEEN_RESOLUTION_SECONDS", float, 3600.0, _not_negative
            ),
        ),
        server=ServerConfig(
            listen=reader.get("INTERCOM_SIDECAR_LISTEN", str, "127.0.0.1:50051", _grpc_address),
            health_listen=reader.get("INTERCOM_SIDECAR_HEALTH_LISTEN", str, "", _host_port),
            metrics_listen=reader.get("INTERCOM_SIDECAR_METRICS_LISTEN", str, "", _host_port),
            shutdown_grace_seconds=reader.get("INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS", float, 20.0, _positive),
            max_message_bytes=reader.get("INTERCOM_SIDECAR_MAX_MESSAGE_BYTES", int, 8 * 1024 * 1024, _positive),
            tls=_read_tls(env),
            insecure_listen=reader.get("INTERCOM_SIDECAR_INSECURE_LISTEN", _boolean, False, _any),
            reflection=reader.get("INTERCOM_SIDECAR_REFLECTION", _boolean, True, _any),
            auth_token=_read_auth_token(env),
            auth_token_file=_path_or_none(env, "INTERCOM_SIDECAR_AUTH_TOKEN_FILE"),
            # Set but empty turns the event view off (elsewhere a blank value means the default).
            admin_listen=""
            if env.get("INTERCOM_SIDECAR_ADMIN_LISTEN", "unset").strip() == ""
            else reader.get("INTERCOM_SIDECAR_ADMIN_LISTEN", str, "127.0.0.1:8090", _host_port),
            admin_recent_events=reader.get(
                "INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS", int, 200, _at_most(_MAX_RECENT_EVENTS)
            ),
        ),
        segment=_read_segment(env),
        queue=QueueConfig(
            max_events=reader.get("INTERCOM_SIDECAR_QUEUE_MAX_EVENTS", int, 10_000, _positive),
            workers=reader.get("INTERCOM_SIDECAR_WORKERS", int, 64, _positive),
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
            max_events=reader.get("INTERCOM_SIDECAR_SPOOL_MAX_EVENTS", int, 1_000_000, _positive),
            max_bytes=reader.get("INTERCOM_SIDECAR_SPOOL_MAX_BYTES", int, 256 * 1024 * 1024, _positive),
            dedupe_window_seconds=reader.get(
                "INTERCOM_SIDECAR_DEDUPE_WINDOW_SECONDS", float, 24 * 3600.0, _not_negative
            ),
            dead_letter_payloads=reader.get(
                "INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS", str, "keep", _one_of(DEAD_LETTER_PAYLOADS)
            ),
            dead_letter_key=_read_dead_letter_key(env),
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
    _check_admin_listen(config.server)
    if config.spool.max_bytes < config.limits.max_event_bytes:
        raise ConfigError("INTERCOM_SIDECAR_SPOOL_MAX_BYTES", "must be at least INTERCOM_SIDECAR_MAX_EVENT_BYTES")
    if config.limits.max_event_bytes > config.server.max_message_bytes:
        raise ConfigError("INTERCOM_SIDECAR_MAX_EVENT_BYTES", "must not exceed INTERCOM_SIDECAR_MAX_MESSAGE_BYTES")
    _refuse_plain_text_beyond_loopback(config.server)
    if config.spool.dead_letter_payloads == "encrypt" and config.spool.dead_letter_key is None:
        raise ConfigError(
            "INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE", "is required by INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS=encrypt"
        )
    return config


_TLS_KEYS = ("INTERCOM_SIDECAR_TLS_CERT_FILE", "INTERCOM_SIDECAR_TLS_KEY_FILE", "INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE")


def _read_tls(env: Mapping[str, str]) -> TlsConfig | None:
    """The TLS file names: certificate and key both or neither; a client CA only with them. Their contents are
    checked when the server starts (`server/tls.py`), and again whenever they change."""
    cert, key, client_ca = (_path_or_none(env, name) for name in _TLS_KEYS)
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError(_TLS_KEYS[2], f"needs {_TLS_KEYS[0]} and {_TLS_KEYS[1]} (mutual TLS is TLS first)")
        return None
    if cert is None or key is None:
        missing, given = (_TLS_KEYS[0], _TLS_KEYS[1]) if cert is None else (_TLS_KEYS[1], _TLS_KEYS[0])
        raise ConfigError(missing, f"must be set too when {given} is (set both, or neither)")
    return TlsConfig(cert_file=cert, key_file=key, client_ca_file=client_ca)


def _refuse_plain_text_beyond_loopback(server: ServerConfig) -> None:
    """Events carry personal data: plain text is for loopback and Unix sockets unless the operator says so."""
    if server.tls is None and not server.insecure_listen and not _is_local_address(server.listen):
        raise ConfigError(
            "INTERCOM_SIDECAR_LISTEN",
            f"{server.listen} is not a loopback address, and plain text there would expose events to the network; "
            f"set {_TLS_KEYS[0]} and {_TLS_KEYS[1]} (TLS), listen on 127.0.0.1 or a unix: socket, or set "
            "INTERCOM_SIDECAR_INSECURE_LISTEN=true if the network is trusted",
        )


def _is_local_address(listen: str) -> bool:
    if listen.startswith("unix:"):
        return True
    host = listen.rpartition(":")[0]
    return _is_loopback(host.removeprefix("[").removesuffix("]"))


_MIN_AUTH_TOKEN_CHARS = 16


def _read_auth_token(env: Mapping[str, str]) -> Secret | None:
    key = "INTERCOM_SIDECAR_AUTH_TOKEN"
    token = _read_secret(env, key, f"{key}_FILE")
    if token is not None and len(token.reveal()) < _MIN_AUTH_TOKEN_CHARS:
        name = f"{key}_FILE" if env.get(f"{key}_FILE", "").strip() else key
        raise ConfigError(name, f"is too short to be a secret: use at least {_MIN_AUTH_TOKEN_CHARS} characters")
    return token


def read_auth_token_file(path: Path) -> Secret:
    """The gRPC auth token in `path` now (for re-reading a rotated file); ConfigError if it is unusable."""
    token = _read_auth_token({"INTERCOM_SIDECAR_AUTH_TOKEN_FILE": str(path)})
    assert token is not None  # an empty file is a ConfigError
    return token


def _path_or_none(env: Mapping[str, str], key: str) -> Path | None:
    value = env.get(key, "").strip()
    return Path(value) if value else None


def read_dead_letter_key(path: Path) -> Secret:
    """The dead-letter key in `path` (for the `dlq` command); ConfigError if it is unusable."""
    key = _read_dead_letter_key({_DEAD_LETTER_KEY_FILE: str(path)})
    assert key is not None
    return key


_DEAD_LETTER_KEY_FILE = "INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE"


def _read_dead_letter_key(env: Mapping[str, str]) -> Secret | None:
    """32 random bytes, base64 (`openssl rand -base64 32`), read from a file only: a key is never an environment
    variable (those show up in `kubectl describe` and process listings). Errors never quote the file."""
    path = env.get(_DEAD_LETTER_KEY_FILE, "").strip()
    if not path:
        return None
    key = _read_secret({_DEAD_LETTER_KEY_FILE: path}, _DEAD_LETTER_KEY_FILE, _DEAD_LETTER_KEY_FILE)
    assert key is not None  # the file is set, so it was read (or raised)
    try:
        raw = base64.b64decode(key.reveal().replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(_DEAD_LETTER_KEY_FILE, "must hold 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")
    return key


_SEGMENT_LISTEN = "INTERCOM_SIDECAR_SEGMENT_LISTEN"
_SEGMENT_KEYS = "INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS"
_SEGMENT_KEYS_FILE = "INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE"


def _read_segment(env: Mapping[str, str]) -> SegmentConfig:
    """Unlike other settings, an empty `INTERCOM_SIDECAR_SEGMENT_LISTEN` is not the default: it turns the API off."""
    listen = env.get(_SEGMENT_LISTEN, "127.0.0.1:8088").strip()
    if listen and (problem := _host_port(listen)):
        raise ConfigError(_SEGMENT_LISTEN, f"{problem.replace('50051', '8088')}, got {listen!r}")
    path = env.get(_SEGMENT_KEYS_FILE, "").strip()
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(_SEGMENT_KEYS_FILE, f"cannot read {path!r}: {getattr(exc, 'strerror', exc)}") from None
        raw = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not raw:
            raise ConfigError(_SEGMENT_KEYS_FILE, f"{path!r} holds no write key (one per line)")
        keys = tuple(_checked_secret(_SEGMENT_KEYS_FILE, key) for key in raw)
    else:
        raw = [key.strip() for key in env.get(_SEGMENT_KEYS, "").split(",") if key.strip()]
        keys = tuple(_checked_secret(_SEGMENT_KEYS, key) for key in raw)
    host = listen.rpartition(":")[0].removeprefix("[").removesuffix("]")
    if listen and not keys and not _is_loopback(host):
        raise ConfigError(
            _SEGMENT_LISTEN,
            f"{listen!r} is not a loopback address: set {_SEGMENT_KEYS_FILE} (or {_SEGMENT_KEYS}) so that callers "
            "must send a write key, or listen on 127.0.0.1",
        )
    return SegmentConfig(listen=listen, write_keys=keys)


def _check_admin_listen(server: ServerConfig) -> None:
    """The event view shows user ids and replays dead letters: it stays on loopback unless explicitly allowed."""
    host = server.admin_listen.rpartition(":")[0].removeprefix("[").removesuffix("]")
    if server.admin_listen and not server.insecure_listen and not _is_loopback(host):
        raise ConfigError(
            "INTERCOM_SIDECAR_ADMIN_LISTEN",
            f"must be a loopback address (it shows user ids and can replay dead letters), got {server.admin_listen!r};"
            " reach it with `kubectl port-forward`, or set INTERCOM_SIDECAR_INSECURE_LISTEN=true",
        )


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


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP address (127.0.0.0/8, ::1): where plain http may go (tests, the fake)."""
    return _is_loopback(host)


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


_MAX_RECENT_EVENTS = 100_000


def _at_most(limit: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        if value < 0:
            return "must not be negative"
        return None if value <= limit else f"must be at most {limit}"

    return check


_MAX_PROTOBUF_DEPTH = 30
"""protobuf's parser stops at 100 nested messages; a Struct level costs 3 of them (Struct, map entry, Value),
and an event's Struct starts 2 deep (Event, call), so about 30 levels is the most any event can carry."""


def _between(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def _non_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _grpc_address(value: str) -> str | None:
    """HOST:PORT, or `unix:PATH` (a Unix domain socket; an absolute path is `unix:/run/sidecar/grpc.sock`)."""
    if value.startswith("unix:"):
        path = value.removeprefix("unix:").removeprefix("//")
        return None if path and "\0" not in path else "must be unix:PATH with a path, e.g. unix:/run/sidecar/grpc.sock"
    return _host_port(value) and "must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051"


def _host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be HOST:PORT, e.g. 127.0.0.1:50051"
    return None
