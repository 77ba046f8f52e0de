"""The README's configuration table lists every setting the code reads, once, with its real default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from intercom_sidecar.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SETTING = re.compile(r'"((?:INTERCOM|OTEL)_[A-Z_]+)"')
TABLE_ROW = re.compile(r"^\| `((?:INTERCOM|OTEL)_[A-Z_]+)` \|([^|]*)\|", re.MULTILINE)


def settings_in_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "intercom_sidecar").rglob("*.py"):
        if "_generated" in path.parts or "fake" in path.parts:
            continue
        names.update(SETTING.findall(path.read_text()))
    return names


def readme_rows() -> list[tuple[str, str]]:
    return TABLE_ROW.findall((ROOT / "README.md").read_text())


def test_every_setting_is_in_the_readme_table_once() -> None:
    rows = [name for name, _ in readme_rows()]
    assert sorted(set(rows)) == sorted(rows), "a setting is listed twice"
    assert set(rows) == settings_in_code()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INTERCOM_SIDECAR_LISTEN", lambda c: c.server.listen),
        ("INTERCOM_SIDECAR_SEGMENT_LISTEN", lambda c: c.segment.listen),
        ("INTERCOM_SIDECAR_QUEUE_MAX_EVENTS", lambda c: c.queue.max_events),
        ("INTERCOM_SIDECAR_WORKERS", lambda c: c.queue.workers),
        ("INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS", lambda c: c.server.shutdown_grace_seconds),
        ("INTERCOM_SIDECAR_MAX_EVENT_BYTES", lambda c: c.limits.max_event_bytes),
        ("INTERCOM_SIDECAR_MAX_MESSAGE_BYTES", lambda c: c.server.max_message_bytes),
        ("INTERCOM_SIDECAR_MAX_FUTURE_SECONDS", lambda c: c.limits.max_future_seconds),
        ("INTERCOM_SIDECAR_MAX_PAST_SECONDS", lambda c: c.limits.max_past_seconds),
        ("INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND", lambda c: c.limits.max_events_per_send),
        ("INTERCOM_SIDECAR_MAX_DEPTH", lambda c: c.limits.max_depth),
        ("INTERCOM_SIDECAR_MAX_KEYS", lambda c: c.limits.max_keys),
        ("INTERCOM_SIDECAR_MAX_STRING_CHARS", lambda c: c.limits.max_string_chars),
        ("INTERCOM_SIDECAR_RETRY_MAX_ELAPSED_SECONDS", lambda c: c.retry.max_elapsed_seconds),
        ("INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS", lambda c: c.retry.initial_backoff_seconds),
        ("INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS", lambda c: c.retry.max_backoff_seconds),
        ("INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS", lambda c: c.intercom.timeout_seconds),
        ("INTERCOM_SIDECAR_HTTP_MAX_CONNECTIONS", lambda c: c.intercom.max_connections),
        ("INTERCOM_SIDECAR_QUEUE_FULL_RETRY_AFTER_SECONDS", lambda c: c.queue.full_retry_after_seconds),
        ("INTERCOM_API_VERSION", lambda c: c.intercom.api_version),
        ("INTERCOM_SIDECAR_ADMIN_LISTEN", lambda c: c.server.admin_listen),
        ("INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS", lambda c: c.server.admin_recent_events),
    ],
)
def test_readme_defaults_are_the_real_defaults(name: str, value: object) -> None:
    config = load_config({"INTERCOM_ACCESS_TOKEN": "t"})
    documented = dict(readme_rows())[name].strip().strip("`")
    actual = value(config)  # type: ignore[operator]
    assert float(documented) == float(actual) if isinstance(actual, int | float) else documented == actual
