"""Settings as typed, validated values with defaults.

Every setting is read from one environment variable (flags override a few of them, see `__main__`), checked
once at start-up, and documented in the README's configuration table. Errors name the variable to fix.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from intercom_sidecar.config_secrets import (
    Secret,
    checked_secret,
    dead_letter_key,
    read_auth_token,
    read_auth_token_file,
    read_dead_letter_key,
    read_secret,
    read_token,
    read_token_file,
)
from intercom_sidecar.config_values import (
    Reader,
    any_value,
    at_most,
    between,
    boolean,
    grpc_address,
    host_port,
    is_loopback_host,
    non_empty,
    not_negative,
    one_of,
    path_or_none,
    positive,
    split_listen,
)
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
    "read_segment_write_keys",
    "read_token_file",
]


REGION_URLS: Mapping[str, str] = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}


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
    """A second address serving only grpc.health.v1 (for Kubernetes probes on the pod IP); empty for none."""
    metrics_listen: str = ""
    """An address serving Prometheus metrics at `/metrics` (e.g. 0.0.0.0:9464); empty for none."""
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

    listen: str = ""
    """Where `/v1/track`, `/v1/batch`, ... are served; empty for none. Off loopback only with write keys.
    `load_config` defaults it to 127.0.0.1:8088; a config built in code (tests, embedding) has none unless asked."""
    write_keys: tuple[Secret, ...] = ()
    """Accepted write keys (the HTTP basic auth user name); none accepts any caller, which only loopback allows."""
    write_keys_file: Path | None = None
    """Where `write_keys` came from, if a file: it is read again when it changes."""


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
    reader = Reader(env)
    config = Config(
        intercom=IntercomConfig(
            token=read_token(env),
            token_file=Path(env["INTERCOM_ACCESS_TOKEN_FILE"].strip())
            if env.get("INTERCOM_ACCESS_TOKEN_FILE", "").strip()
            else None,
            base_url=_read_base_url(env),
            api_version=reader.get("INTERCOM_API_VERSION", str, "2.16", non_empty),
            timeout_seconds=reader.get("INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS", float, 10.0, positive),
            max_connections=reader.get("INTERCOM_SIDECAR_HTTP_MAX_CONNECTIONS", int, 64, positive),
            create_attributes=reader.get("INTERCOM_SIDECAR_CREATE_ATTRIBUTES", boolean, True, any_value),
            cache_max_entries=reader.get("INTERCOM_SIDECAR_CACHE_MAX_ENTRIES", int, 100_000, positive),
            last_seen_resolution_seconds=reader.get(
                "INTERCOM_SIDECAR_LAST_SEEN_RESOLUTION_SECONDS", float, 3600.0, not_negative
            ),
        ),
        server=ServerConfig(
            listen=reader.get("INTERCOM_SIDECAR_LISTEN", str, "127.0.0.1:50051", grpc_address),
            health_listen=reader.get("INTERCOM_SIDECAR_HEALTH_LISTEN", str, "", host_port),
            metrics_listen=reader.get("INTERCOM_SIDECAR_METRICS_LISTEN", str, "", host_port),
            shutdown_grace_seconds=reader.get("INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS", float, 20.0, positive),
            max_message_bytes=reader.get("INTERCOM_SIDECAR_MAX_MESSAGE_BYTES", int, 8 * 1024 * 1024, positive),
            tls=_read_tls(env),
            insecure_listen=reader.get("INTERCOM_SIDECAR_INSECURE_LISTEN", boolean, False, any_value),
            reflection=reader.get("INTERCOM_SIDECAR_REFLECTION", boolean, True, any_value),
            auth_token=read_auth_token(env),
            auth_token_file=path_or_none(env, "INTERCOM_SIDECAR_AUTH_TOKEN_FILE"),
            # Set but empty turns the event view off (elsewhere a blank value means the default).
            admin_listen=""
            if env.get("INTERCOM_SIDECAR_ADMIN_LISTEN", "unset").strip() == ""
            else reader.get("INTERCOM_SIDECAR_ADMIN_LISTEN", str, "127.0.0.1:8090", host_port),
            admin_recent_events=reader.get(
                "INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS", int, 200, at_most(_MAX_RECENT_EVENTS)
            ),
        ),
        segment=_read_segment(env),
        queue=QueueConfig(
            max_events=reader.get("INTERCOM_SIDECAR_QUEUE_MAX_EVENTS", int, 10_000, positive),
            workers=reader.get("INTERCOM_SIDECAR_WORKERS", int, 64, positive),
            full_retry_after_seconds=reader.get(
                "INTERCOM_SIDECAR_QUEUE_FULL_RETRY_AFTER_SECONDS", float, 1.0, positive
            ),
        ),
        retry=RetryConfig(
            initial_backoff_seconds=reader.get("INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS", float, 0.5, positive),
            max_backoff_seconds=reader.get("INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS", float, 60.0, positive),
            max_elapsed_seconds=reader.get("INTERCOM_SIDECAR_RETRY_MAX_ELAPSED_SECONDS", float, 3 * 3600.0, positive),
        ),
        limits=LimitsConfig(
            max_event_bytes=reader.get("INTERCOM_SIDECAR_MAX_EVENT_BYTES", int, 32 * 1024, positive),
            max_future_seconds=reader.get("INTERCOM_SIDECAR_MAX_FUTURE_SECONDS", float, 24 * 3600.0, not_negative),
            max_past_seconds=reader.get("INTERCOM_SIDECAR_MAX_PAST_SECONDS", float, 3650 * 24 * 3600.0, not_negative),
            max_events_per_send=reader.get("INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND", int, 1000, positive),
            max_depth=reader.get("INTERCOM_SIDECAR_MAX_DEPTH", int, 10, between(1, _MAX_PROTOBUF_DEPTH)),
            max_keys=reader.get("INTERCOM_SIDECAR_MAX_KEYS", int, 1000, positive),
            max_string_chars=reader.get("INTERCOM_SIDECAR_MAX_STRING_CHARS", int, 10_000, positive),
        ),
        spool=SpoolConfig(
            kind=reader.get("INTERCOM_SIDECAR_SPOOL", str, "sqlite", one_of(SPOOL_KINDS)),
            directory=reader.get("INTERCOM_SIDECAR_SPOOL_DIR", Path, default_spool_directory(env), any_value),
            max_events=reader.get("INTERCOM_SIDECAR_SPOOL_MAX_EVENTS", int, 1_000_000, positive),
            max_bytes=reader.get("INTERCOM_SIDECAR_SPOOL_MAX_BYTES", int, 256 * 1024 * 1024, positive),
            dedupe_window_seconds=reader.get(
                "INTERCOM_SIDECAR_DEDUPE_WINDOW_SECONDS", float, 24 * 3600.0, not_negative
            ),
            dead_letter_payloads=reader.get(
                "INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS", str, "keep", one_of(DEAD_LETTER_PAYLOADS)
            ),
            dead_letter_key=dead_letter_key(env),
        ),
        mapping=MappingConfig(
            page_mode=reader.get("INTERCOM_SIDECAR_PAGE_MODE", str, "ignore", one_of(PAGE_MODES)),
            leads=reader.get("INTERCOM_SIDECAR_LEADS", boolean, False, any_value),
            create_missing_contacts=reader.get("INTERCOM_SIDECAR_CREATE_MISSING_CONTACTS", boolean, True, any_value),
            identity_secret=read_secret(env, "INTERCOM_IDENTITY_SECRET", "INTERCOM_IDENTITY_SECRET_FILE"),
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
    cert, key, client_ca = (path_or_none(env, name) for name in _TLS_KEYS)
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
    return is_loopback_host(split_listen(listen)[0])


_SEGMENT_LISTEN = "INTERCOM_SIDECAR_SEGMENT_LISTEN"


_SEGMENT_KEYS = "INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS"


_SEGMENT_KEYS_FILE = "INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE"


def _read_segment(env: Mapping[str, str]) -> SegmentConfig:
    """Unlike other settings, an empty `INTERCOM_SIDECAR_SEGMENT_LISTEN` is not the default: it turns the API off."""
    listen = env.get(_SEGMENT_LISTEN, "127.0.0.1:8088").strip()
    if listen and (problem := host_port(listen)):
        raise ConfigError(_SEGMENT_LISTEN, f"{problem.replace('50051', '8088')}, got {listen!r}")
    path = env.get(_SEGMENT_KEYS_FILE, "").strip()
    if path:
        keys = read_segment_write_keys(Path(path))
    else:
        raw = [key.strip() for key in env.get(_SEGMENT_KEYS, "").split(",") if key.strip()]
        keys = tuple(checked_secret(_SEGMENT_KEYS, key) for key in raw)
    if listen and not keys and not is_loopback_host(split_listen(listen)[0]):
        raise ConfigError(
            _SEGMENT_LISTEN,
            f"{listen!r} is not a loopback address: set {_SEGMENT_KEYS_FILE} (or {_SEGMENT_KEYS}) so that callers "
            "must send a write key, or listen on 127.0.0.1",
        )
    return SegmentConfig(listen=listen, write_keys=keys, write_keys_file=Path(path) if path else None)


def read_segment_write_keys(path: Path) -> tuple[Secret, ...]:
    """The write keys in `path`, one per line (`#` comments and blank lines skipped); ConfigError naming
    INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE if it cannot be read or holds none."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(_SEGMENT_KEYS_FILE, f"cannot read {str(path)!r}: {getattr(exc, 'strerror', exc)}") from None
    raw = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not raw:
        raise ConfigError(_SEGMENT_KEYS_FILE, f"{str(path)!r} holds no write key (one per line)")
    return tuple(checked_secret(_SEGMENT_KEYS_FILE, key) for key in raw)


def _check_admin_listen(server: ServerConfig) -> None:
    """The event view shows user ids and replays dead letters: it stays on loopback unless explicitly allowed."""
    admin = server.admin_listen
    if admin and not server.insecure_listen and not is_loopback_host(split_listen(admin)[0]):
        raise ConfigError(
            "INTERCOM_SIDECAR_ADMIN_LISTEN",
            f"must be a loopback address (it shows user ids and can replay dead letters), got {server.admin_listen!r};"
            " reach it with `kubectl port-forward`, or set INTERCOM_SIDECAR_INSECURE_LISTEN=true",
        )


def _read_base_url(env: Mapping[str, str]) -> str:
    url = env.get("INTERCOM_API_URL", "").strip()
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("INTERCOM_API_URL", f"must be an http(s) URL, got {url!r}")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ConfigError("INTERCOM_API_URL", "plain http is only allowed for loopback addresses; use https")
        return url.rstrip("/")
    region = env.get("INTERCOM_REGION", "us").strip().lower() or "us"
    if region not in REGION_URLS:
        raise ConfigError("INTERCOM_REGION", f"must be one of {', '.join(REGION_URLS)}, got {region!r}")
    return REGION_URLS[region]


_MAX_RECENT_EVENTS = 100_000


_MAX_PROTOBUF_DEPTH = 30
"""protobuf's parser stops at 100 nested messages; a Struct level costs 3 of them (Struct, map entry, Value),
and an event's Struct starts 2 deep (Event, call), so about 30 levels is the most any event can carry."""
