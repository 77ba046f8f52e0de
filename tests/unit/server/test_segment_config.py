"""The Segment HTTP API's settings: listen address, write keys, and the loopback-only open mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from intercom_sidecar.config import Secret, SegmentConfig, load_config
from intercom_sidecar.errors import ConfigError

BASE = {"INTERCOM_ACCESS_TOKEN": "tok_segment_config"}


def segment(**env: str) -> SegmentConfig:
    return load_config({**BASE, **env}).segment


def test_default_is_open_on_loopback_port_8088() -> None:
    assert segment() == SegmentConfig(listen="127.0.0.1:8088", write_keys=())


def test_empty_listen_turns_it_off() -> None:
    assert segment(INTERCOM_SIDECAR_SEGMENT_LISTEN="").listen == ""


def test_comma_separated_keys() -> None:
    keys = segment(INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS=" wk-1, wk-2 ,,").write_keys
    assert keys == (Secret("wk-1"), Secret("wk-2"))
    assert "wk-1" not in repr(keys)


def test_keys_file_wins_and_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# one key per line\nwk-a\n\n  wk-b  \n")
    config = segment(INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE=str(path), INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS="wk-c")
    assert config.write_keys == (Secret("wk-a"), Secret("wk-b"))


@pytest.mark.parametrize("listen", ["0.0.0.0:8088", "10.1.2.3:8088", "[::]:8088"])
def test_off_loopback_needs_write_keys(listen: str) -> None:
    with pytest.raises(ConfigError) as error:
        segment(INTERCOM_SIDECAR_SEGMENT_LISTEN=listen)
    assert str(error.value) == (
        f"INTERCOM_SIDECAR_SEGMENT_LISTEN: {listen!r} is not a loopback address: set "
        "INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE (or INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS) so that callers must "
        "send a write key, or listen on 127.0.0.1"
    )
    config = segment(INTERCOM_SIDECAR_SEGMENT_LISTEN=listen, INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS="wk-1")
    assert config.listen == listen


@pytest.mark.parametrize("listen", ["localhost:8088", "[::1]:8088", "127.0.0.2:0"])
def test_loopback_may_be_open(listen: str) -> None:
    assert segment(INTERCOM_SIDECAR_SEGMENT_LISTEN=listen).listen == listen


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"INTERCOM_SIDECAR_SEGMENT_LISTEN": "8088"},
            "INTERCOM_SIDECAR_SEGMENT_LISTEN: must be HOST:PORT, e.g. 127.0.0.1:8088, got '8088'",
        ),
        (
            {"INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS": "good,has space"},
            "INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS: contains spaces, control or non-ASCII characters "
            "(is there a second line?)",
        ),
        (
            {"INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE": "/nonexistent/keys"},
            "INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE: cannot read '/nonexistent/keys': No such file or directory",
        ),
    ],
)
def test_errors_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        segment(**env)
    assert str(error.value) == message


def test_an_empty_keys_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError) as error:
        segment(INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE=str(path))
    assert (
        str(error.value) == f"INTERCOM_SIDECAR_SEGMENT_WRITE_KEYS_FILE: {str(path)!r} holds no write key (one per line)"
    )
