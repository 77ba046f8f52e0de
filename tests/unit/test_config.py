"""load_config: defaults, overrides, and every ConfigError message asserted exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from intercom_sidecar.config import (
    REGION_URLS,
    Config,
    IntercomConfig,
    LimitsConfig,
    QueueConfig,
    RetryConfig,
    Secret,
    SegmentConfig,
    ServerConfig,
    load_config,
)
from intercom_sidecar.errors import ConfigError

TOKEN = "tok_config_5a4b3c2d1e"
BASE = {"INTERCOM_ACCESS_TOKEN": TOKEN}
NO_TOKEN = (
    "INTERCOM_ACCESS_TOKEN: is not set (nor INTERCOM_ACCESS_TOKEN_FILE); to try the sidecar without an Intercom "
    "account, run `intercom-sidecar serve --fake-intercom` (or `make run`)"
)


def load(**env: str) -> Config:
    return load_config({**BASE, **env})


def test_defaults() -> None:
    # The event view and the Segment HTTP API are on by default on loopback for the real process; a config built
    # in code has neither.
    assert load_config(BASE) == Config(
        intercom=IntercomConfig(token=Secret(TOKEN)),
        server=ServerConfig(admin_listen="127.0.0.1:8090"),
        segment=SegmentConfig(listen="127.0.0.1:8088"),
    )
    config = load_config(BASE)
    assert config.intercom.base_url == "https://api.intercom.io"
    assert config.intercom.api_version == "2.16"
    assert config.server.listen == "127.0.0.1:50051"
    assert config.queue == QueueConfig(max_events=10_000, workers=64, full_retry_after_seconds=1.0)
    assert config.retry == RetryConfig(
        initial_backoff_seconds=0.5, max_backoff_seconds=60.0, max_elapsed_seconds=10800.0
    )
    assert config.limits == LimitsConfig(
        max_event_bytes=32 * 1024,
        max_future_seconds=86400.0,
        max_past_seconds=3650 * 86400.0,
        max_events_per_send=1000,
        max_depth=10,
        max_keys=1000,
        max_string_chars=10_000,
    )


def test_every_setting_is_read() -> None:
    config = load(
        INTERCOM_API_VERSION="2.11",
        INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS="2.5",
        INTERCOM_SIDECAR_HTTP_MAX_CONNECTIONS="4",
        INTERCOM_SIDECAR_LISTEN="0.0.0.0:6000",
        INTERCOM_SIDECAR_INSECURE_LISTEN="true",
        INTERCOM_SIDECAR_REFLECTION="false",
        INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS="5",
        INTERCOM_SIDECAR_MAX_MESSAGE_BYTES="65536",
        INTERCOM_SIDECAR_QUEUE_MAX_EVENTS="50",
        INTERCOM_SIDECAR_WORKERS="2",
        INTERCOM_SIDECAR_QUEUE_FULL_RETRY_AFTER_SECONDS="0.25",
        INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS="0.1",
        INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS="3",
        INTERCOM_SIDECAR_RETRY_MAX_ELAPSED_SECONDS="60",
        INTERCOM_SIDECAR_MAX_EVENT_BYTES="1024",
        INTERCOM_SIDECAR_MAX_FUTURE_SECONDS="0",
        INTERCOM_SIDECAR_ADMIN_LISTEN="[::1]:9000",
        INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS="0",
        INTERCOM_SIDECAR_MAX_PAST_SECONDS="0",
        INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND="10",
        INTERCOM_SIDECAR_MAX_DEPTH="30",
        INTERCOM_SIDECAR_MAX_KEYS="5",
        INTERCOM_SIDECAR_MAX_STRING_CHARS="20",
    )
    assert config == Config(
        intercom=IntercomConfig(token=Secret(TOKEN), api_version="2.11", timeout_seconds=2.5, max_connections=4),
        server=ServerConfig(
            listen="0.0.0.0:6000",
            shutdown_grace_seconds=5.0,
            max_message_bytes=65536,
            insecure_listen=True,
            reflection=False,
            admin_listen="[::1]:9000",
            admin_recent_events=0,
        ),
        segment=SegmentConfig(listen="127.0.0.1:8088"),
        queue=QueueConfig(max_events=50, workers=2, full_retry_after_seconds=0.25),
        retry=RetryConfig(initial_backoff_seconds=0.1, max_backoff_seconds=3.0, max_elapsed_seconds=60.0),
        limits=LimitsConfig(
            max_event_bytes=1024,
            max_future_seconds=0.0,
            max_past_seconds=0.0,
            max_events_per_send=10,
            max_depth=30,
            max_keys=5,
            max_string_chars=20,
        ),
    )


def test_values_are_stripped_and_blank_means_default() -> None:
    config = load(INTERCOM_SIDECAR_WORKERS=" 3 ", INTERCOM_SIDECAR_QUEUE_MAX_EVENTS="  ", INTERCOM_API_VERSION=" ")
    assert (config.queue.workers, config.queue.max_events, config.intercom.api_version) == (3, 10_000, "2.16")


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("INTERCOM_ACCESS_TOKEN_FILE", "INTERCOM_API_URL", "INTERCOM_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("INTERCOM_ACCESS_TOKEN", "from-environ")
    assert load_config().intercom.token == Secret("from-environ")


# --- the token ---


@pytest.mark.parametrize("env", [{}, {"INTERCOM_ACCESS_TOKEN": "  "}, {"INTERCOM_ACCESS_TOKEN_FILE": " "}])
def test_missing_token(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert str(caught.value) == NO_TOKEN
    assert caught.value.key == "INTERCOM_ACCESS_TOKEN"


@pytest.mark.parametrize("token", ["tok-1\nsecond-line", "tok 1", "tok\x00", "tök"])
def test_a_token_that_cannot_be_a_header_is_refused_without_showing_it(tmp_path: Path, token: str) -> None:
    path = tmp_path / "token"
    path.write_text(token)
    for env in ({"INTERCOM_ACCESS_TOKEN": token}, {"INTERCOM_ACCESS_TOKEN_FILE": str(path)}):
        with pytest.raises(ConfigError) as caught:
            load_config(env)
        key = next(iter(env))
        assert str(caught.value) == (
            f"{key}: contains spaces, control or non-ASCII characters (is there a second line?)"
        )
        assert "tok" not in str(caught.value).removeprefix(key).replace("(is there", "")


def test_token_is_stripped() -> None:
    assert load_config({"INTERCOM_ACCESS_TOKEN": f"  {TOKEN}\n"}).intercom.token.reveal() == TOKEN


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n", encoding="utf-8")
    assert load_config({"INTERCOM_ACCESS_TOKEN_FILE": str(path)}).intercom.token.reveal() == TOKEN


def test_token_file_wins_over_env(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file", encoding="utf-8")
    config = load_config({"INTERCOM_ACCESS_TOKEN": "from-env", "INTERCOM_ACCESS_TOKEN_FILE": str(path)})
    assert config.intercom.token.reveal() == "from-file"


def test_missing_token_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_ACCESS_TOKEN_FILE=str(path))
    assert str(caught.value) == f"INTERCOM_ACCESS_TOKEN_FILE: cannot read '{path}': No such file or directory"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_unreadable_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_ACCESS_TOKEN_FILE=str(tmp_path))  # a directory
    assert str(caught.value) == f"INTERCOM_ACCESS_TOKEN_FILE: cannot read '{tmp_path}': Is a directory"


@pytest.mark.parametrize("content", ["", " \n\t\n"], ids=["empty", "whitespace"])
def test_empty_token_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_ACCESS_TOKEN_FILE=str(path))  # the env token does not rescue it
    assert str(caught.value) == f"INTERCOM_ACCESS_TOKEN_FILE: '{path}' is empty"


def test_repr_never_shows_the_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("tok_from_file_0099", encoding="utf-8")
    for config in (load_config(BASE), load_config({"INTERCOM_ACCESS_TOKEN_FILE": str(path)})):
        token = config.intercom.token.reveal()
        for text in (repr(config), str(config), repr(config.intercom), f"{config.intercom.token}"):
            assert token not in text
        assert "Secret('**********')" in repr(config)


def test_secret() -> None:
    assert Secret("a") == Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert repr(Secret("a")) == str(Secret("a")) == "Secret('**********')"


# --- where Intercom is ---


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "https://api.intercom.io"),
        ({"INTERCOM_REGION": "us"}, "https://api.intercom.io"),
        ({"INTERCOM_REGION": " EU "}, "https://api.eu.intercom.io"),
        ({"INTERCOM_REGION": "au"}, "https://api.au.intercom.io"),
        ({"INTERCOM_REGION": " "}, "https://api.intercom.io"),
        ({"INTERCOM_API_URL": "https://intercom.proxy.example/"}, "https://intercom.proxy.example"),
        (
            {"INTERCOM_API_URL": "https://intercom.proxy.example", "INTERCOM_REGION": "eu"},
            "https://intercom.proxy.example",
        ),
        (
            {"INTERCOM_API_URL": "https://intercom.proxy.example", "INTERCOM_REGION": "mars"},
            "https://intercom.proxy.example",
        ),
        ({"INTERCOM_API_URL": "http://127.0.0.1:8089/"}, "http://127.0.0.1:8089"),
        ({"INTERCOM_API_URL": "http://127.5.6.7:8089"}, "http://127.5.6.7:8089"),
        ({"INTERCOM_API_URL": "http://localhost:8089"}, "http://localhost:8089"),
        ({"INTERCOM_API_URL": "http://[::1]:8089"}, "http://[::1]:8089"),
    ],
)
def test_base_url(env: dict[str, str], url: str) -> None:
    assert load(**env).intercom.base_url == url


def test_region_urls() -> None:
    assert dict(REGION_URLS) == {
        "us": "https://api.intercom.io",
        "eu": "https://api.eu.intercom.io",
        "au": "https://api.au.intercom.io",
    }


HTTP_ONLY_LOOPBACK = "INTERCOM_API_URL: plain http is only allowed for loopback addresses; use https"

ERRORS: list[tuple[dict[str, str], str]] = [
    ({"INTERCOM_REGION": "mars"}, "INTERCOM_REGION: must be one of us, eu, au, got 'mars'"),
    (
        {"INTERCOM_API_URL": "ftp://intercom.example"},
        "INTERCOM_API_URL: must be an http(s) URL, got 'ftp://intercom.example'",
    ),
    ({"INTERCOM_API_URL": "https://"}, "INTERCOM_API_URL: must be an http(s) URL, got 'https://'"),
    ({"INTERCOM_API_URL": "api.intercom.io"}, "INTERCOM_API_URL: must be an http(s) URL, got 'api.intercom.io'"),
    ({"INTERCOM_API_URL": "http://api.intercom.io"}, HTTP_ONLY_LOOPBACK),
    ({"INTERCOM_API_URL": "http://10.0.0.5:8089"}, HTTP_ONLY_LOOPBACK),
    ({"INTERCOM_API_URL": "http://127.attacker.example"}, HTTP_ONLY_LOOPBACK),
    ({"INTERCOM_API_URL": "http://localhost.attacker.example"}, HTTP_ONLY_LOOPBACK),
    # numbers
    (
        {"INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS": "ten"},
        "INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS: must be a number, got 'ten'",
    ),
    ({"INTERCOM_SIDECAR_WORKERS": "1.5"}, "INTERCOM_SIDECAR_WORKERS: must be an integer, got '1.5'"),
    ({"INTERCOM_SIDECAR_WORKERS": "many"}, "INTERCOM_SIDECAR_WORKERS: must be an integer, got 'many'"),
    ({"INTERCOM_SIDECAR_WORKERS": "0"}, "INTERCOM_SIDECAR_WORKERS: must be greater than 0, got '0'"),
    (
        {"INTERCOM_SIDECAR_QUEUE_MAX_EVENTS": "-5"},
        "INTERCOM_SIDECAR_QUEUE_MAX_EVENTS: must be greater than 0, got '-5'",
    ),
    (
        {"INTERCOM_SIDECAR_HTTP_MAX_CONNECTIONS": "0"},
        "INTERCOM_SIDECAR_HTTP_MAX_CONNECTIONS: must be greater than 0, got '0'",
    ),
    (
        {"INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS": "-1"},
        "INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS: must be greater than 0, got '-1'",
    ),
    (
        {"INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS": "nan"},
        "INTERCOM_SIDECAR_HTTP_TIMEOUT_SECONDS: must be a finite number, got 'nan'",
    ),
    (
        {"INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS": "inf"},
        "INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS: must be a finite number, got 'inf'",
    ),
    (
        {"INTERCOM_SIDECAR_MAX_MESSAGE_BYTES": "0"},
        "INTERCOM_SIDECAR_MAX_MESSAGE_BYTES: must be greater than 0, got '0'",
    ),
    (
        {"INTERCOM_SIDECAR_QUEUE_FULL_RETRY_AFTER_SECONDS": "0"},
        "INTERCOM_SIDECAR_QUEUE_FULL_RETRY_AFTER_SECONDS: must be greater than 0, got '0'",
    ),
    (
        {"INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS": "0"},
        "INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS: must be greater than 0, got '0'",
    ),
    (
        {"INTERCOM_SIDECAR_RETRY_MAX_ELAPSED_SECONDS": "soon"},
        "INTERCOM_SIDECAR_RETRY_MAX_ELAPSED_SECONDS: must be a number, got 'soon'",
    ),
    ({"INTERCOM_SIDECAR_MAX_EVENT_BYTES": "0"}, "INTERCOM_SIDECAR_MAX_EVENT_BYTES: must be greater than 0, got '0'"),
    ({"INTERCOM_SIDECAR_MAX_PAST_SECONDS": "-1"}, "INTERCOM_SIDECAR_MAX_PAST_SECONDS: must not be negative, got '-1'"),
    (
        {"INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND": "0"},
        "INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND: must be greater than 0, got '0'",
    ),
    ({"INTERCOM_SIDECAR_MAX_DEPTH": "0"}, "INTERCOM_SIDECAR_MAX_DEPTH: must be between 1 and 30, got '0'"),
    ({"INTERCOM_SIDECAR_MAX_DEPTH": "31"}, "INTERCOM_SIDECAR_MAX_DEPTH: must be between 1 and 30, got '31'"),
    ({"INTERCOM_SIDECAR_MAX_KEYS": "-5"}, "INTERCOM_SIDECAR_MAX_KEYS: must be greater than 0, got '-5'"),
    ({"INTERCOM_SIDECAR_MAX_STRING_CHARS": "x"}, "INTERCOM_SIDECAR_MAX_STRING_CHARS: must be an integer, got 'x'"),
    (
        {"INTERCOM_SIDECAR_MAX_FUTURE_SECONDS": "-1"},
        "INTERCOM_SIDECAR_MAX_FUTURE_SECONDS: must not be negative, got '-1'",
    ),
    # listen
    (
        {"INTERCOM_SIDECAR_LISTEN": "nope"},
        "INTERCOM_SIDECAR_LISTEN: must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051, got 'nope'",
    ),
    (
        {"INTERCOM_SIDECAR_LISTEN": ":50051"},
        "INTERCOM_SIDECAR_LISTEN: must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051, got ':50051'",
    ),
    (
        {"INTERCOM_SIDECAR_LISTEN": "localhost:grpc"},
        "INTERCOM_SIDECAR_LISTEN: must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051, got 'localhost:grpc'",
    ),
    (
        {"INTERCOM_SIDECAR_LISTEN": "127.0.0.1:65536"},
        "INTERCOM_SIDECAR_LISTEN: must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051, got '127.0.0.1:65536'",
    ),
    (
        {"INTERCOM_SIDECAR_LISTEN": "127.0.0.1:"},
        "INTERCOM_SIDECAR_LISTEN: must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051, got '127.0.0.1:'",
    ),
    (
        {"INTERCOM_SIDECAR_ADMIN_LISTEN": "8090"},
        "INTERCOM_SIDECAR_ADMIN_LISTEN: must be HOST:PORT, e.g. 127.0.0.1:50051, got '8090'",
    ),
    (
        {"INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS": "-1"},
        "INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS: must not be negative, got '-1'",
    ),
    (
        {"INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS": "100001"},
        "INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS: must be at most 100000, got '100001'",
    ),
    (
        {"INTERCOM_SIDECAR_INSECURE_LISTEN": "maybe"},
        "INTERCOM_SIDECAR_INSECURE_LISTEN: must be true or false, got 'maybe'",
    ),
    # settings that must agree
    (
        {"INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS": "0.1"},
        "INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS: must be at least INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS",
    ),
    (
        {"INTERCOM_SIDECAR_MAX_EVENT_BYTES": "2048", "INTERCOM_SIDECAR_MAX_MESSAGE_BYTES": "1024"},
        "INTERCOM_SIDECAR_MAX_EVENT_BYTES: must not exceed INTERCOM_SIDECAR_MAX_MESSAGE_BYTES",
    ),
]


@pytest.mark.parametrize(
    ("env", "message"), ERRORS, ids=[message.split(":")[0] + "=" + "|".join(env.values()) for env, message in ERRORS]
)
def test_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**env)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)
    key, _, problem = message.partition(": ")
    assert (caught.value.key, caught.value.problem) == (key, problem)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:50051", "localhost:1", "unix:/run/sidecar/grpc.sock"])
def test_listen_accepted(listen: str) -> None:
    assert load(INTERCOM_SIDECAR_LISTEN=listen).server.listen == listen


def test_equal_backoffs_are_fine() -> None:
    config = load(INTERCOM_SIDECAR_RETRY_INITIAL_BACKOFF_SECONDS="2", INTERCOM_SIDECAR_RETRY_MAX_BACKOFF_SECONDS="2")
    assert config.retry.max_backoff_seconds == config.retry.initial_backoff_seconds == 2.0


def test_replace() -> None:
    config = load_config(BASE)
    changed = config.replace(queue=QueueConfig(workers=1))
    assert changed.queue.workers == 1
    assert changed.intercom is config.intercom


@pytest.mark.parametrize("listen", ["0.0.0.0:8090", "10.0.0.7:8090", "[::]:8090", "pod.example:8090", "127.example:1"])
def test_a_non_loopback_admin_address_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_SIDECAR_ADMIN_LISTEN=listen)
    assert str(caught.value) == (
        f"INTERCOM_SIDECAR_ADMIN_LISTEN: must be a loopback address (it shows user ids and can replay dead letters), "
        f"got {listen!r}; reach it with `kubectl port-forward`, or set INTERCOM_SIDECAR_INSECURE_LISTEN=true"
    )


def test_a_non_loopback_admin_address_needs_insecure_listen() -> None:
    config = load(INTERCOM_SIDECAR_ADMIN_LISTEN="0.0.0.0:8090", INTERCOM_SIDECAR_INSECURE_LISTEN="true")
    assert (config.server.admin_listen, config.server.insecure_listen) == ("0.0.0.0:8090", True)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.8.9.10:8090", "[::1]:8090", "localhost:8090"])
def test_loopback_admin_addresses_are_accepted(listen: str) -> None:
    assert load(INTERCOM_SIDECAR_ADMIN_LISTEN=listen).server.admin_listen == listen


def test_the_admin_address_is_turned_off_by_an_empty_value() -> None:
    # Elsewhere a blank value means the default; here, set but empty means no event view.
    assert load(INTERCOM_SIDECAR_ADMIN_LISTEN="").server.admin_listen == ""
    assert load(INTERCOM_SIDECAR_ADMIN_LISTEN="  ").server.admin_listen == ""
    assert load().server.admin_listen == "127.0.0.1:8090"
