"""The transport-security settings in load_config: where plain text may listen, TLS files, the auth token."""

from __future__ import annotations

from pathlib import Path

import pytest

from intercom_sidecar.config import Config, Secret, TlsConfig, load_config
from intercom_sidecar.errors import ConfigError

TOKEN = "tok_config_5a4b3c2d1e"
AUTH = "grpc-auth-7f6e5d4c3b2a1908"
REFUSED = (
    "INTERCOM_SIDECAR_LISTEN: {listen} is not a loopback address, and plain text there would expose events to the "
    "network; set INTERCOM_SIDECAR_TLS_CERT_FILE and INTERCOM_SIDECAR_TLS_KEY_FILE (TLS), listen on 127.0.0.1 or a "
    "unix: socket, or set INTERCOM_SIDECAR_INSECURE_LISTEN=true if the network is trusted"
)
TLS = {"INTERCOM_SIDECAR_TLS_CERT_FILE": "/tls/tls.crt", "INTERCOM_SIDECAR_TLS_KEY_FILE": "/tls/tls.key"}


def load(**env: str) -> Config:
    return load_config({"INTERCOM_ACCESS_TOKEN": TOKEN, **env})


def test_defaults_are_loopback_plain_text_with_reflection_and_no_token() -> None:
    server = load().server
    assert (server.listen, server.tls, server.insecure_listen, server.reflection) == (
        "127.0.0.1:50051",
        None,
        False,
        True,
    )
    assert (server.auth_token, server.auth_token_file) == (None, None)


@pytest.mark.parametrize(
    "listen",
    ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "[fd00::1]:50051", "sidecar.shop:50051", "127.example.com:1"],
)
def test_plain_text_beyond_loopback_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_SIDECAR_LISTEN=listen)
    assert str(caught.value) == REFUSED.format(listen=listen)
    assert caught.value.key == "INTERCOM_SIDECAR_LISTEN"


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:50051", "127.9.9.9:1", "[::1]:50051", "localhost:50051", "unix:/run/s/grpc.sock", "unix:g.sock"],
)
def test_plain_text_on_loopback_or_a_unix_socket_is_fine(listen: str) -> None:
    assert load(INTERCOM_SIDECAR_LISTEN=listen).server.listen == listen


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051"])
def test_beyond_loopback_with_tls_or_the_insecure_flag(listen: str) -> None:
    with_tls = load(INTERCOM_SIDECAR_LISTEN=listen, **TLS).server
    assert with_tls.tls == TlsConfig(cert_file=Path("/tls/tls.crt"), key_file=Path("/tls/tls.key"))
    insecure = load(INTERCOM_SIDECAR_LISTEN=listen, INTERCOM_SIDECAR_INSECURE_LISTEN="true").server
    assert (insecure.listen, insecure.insecure_listen, insecure.tls) == (listen, True, None)


def test_health_and_metrics_may_listen_anywhere_in_plain_text() -> None:
    server = load(
        INTERCOM_SIDECAR_HEALTH_LISTEN="0.0.0.0:50052", INTERCOM_SIDECAR_METRICS_LISTEN="10.0.0.7:9464"
    ).server
    assert (server.health_listen, server.metrics_listen) == ("0.0.0.0:50052", "10.0.0.7:9464")


def test_insecure_flag_false_still_refuses() -> None:
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_SIDECAR_LISTEN="0.0.0.0:1", INTERCOM_SIDECAR_INSECURE_LISTEN="false")
    assert str(caught.value) == REFUSED.format(listen="0.0.0.0:1")


def test_mutual_tls_files() -> None:
    tls = load(**TLS, INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE=" /tls/clients.crt ").server.tls
    assert tls == TlsConfig(Path("/tls/tls.crt"), Path("/tls/tls.key"), client_ca_file=Path("/tls/clients.crt"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"INTERCOM_SIDECAR_TLS_CERT_FILE": "/tls/tls.crt"},
            "INTERCOM_SIDECAR_TLS_KEY_FILE: must be set too when INTERCOM_SIDECAR_TLS_CERT_FILE is (set both, or "
            "neither)",
        ),
        (
            {"INTERCOM_SIDECAR_TLS_KEY_FILE": "/tls/tls.key", "INTERCOM_SIDECAR_TLS_CERT_FILE": " "},
            "INTERCOM_SIDECAR_TLS_CERT_FILE: must be set too when INTERCOM_SIDECAR_TLS_KEY_FILE is (set both, or "
            "neither)",
        ),
        (
            {"INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE": "/tls/clients.crt"},
            "INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE: needs INTERCOM_SIDECAR_TLS_CERT_FILE and "
            "INTERCOM_SIDECAR_TLS_KEY_FILE (mutual TLS is TLS first)",
        ),
        (
            {"INTERCOM_SIDECAR_INSECURE_LISTEN": "maybe"},
            "INTERCOM_SIDECAR_INSECURE_LISTEN: must be true or false, got 'maybe'",
        ),
        ({"INTERCOM_SIDECAR_REFLECTION": "2"}, "INTERCOM_SIDECAR_REFLECTION: must be true or false, got '2'"),
        (
            {"INTERCOM_SIDECAR_LISTEN": "unix:"},
            "INTERCOM_SIDECAR_LISTEN: must be unix:PATH with a path, e.g. unix:/run/sidecar/grpc.sock, got 'unix:'",
        ),
        (
            {"INTERCOM_SIDECAR_LISTEN": "0.0.0.0"},
            "INTERCOM_SIDECAR_LISTEN: must be HOST:PORT or unix:PATH, e.g. 127.0.0.1:50051, got '0.0.0.0'",
        ),
        (
            {"INTERCOM_SIDECAR_AUTH_TOKEN": "qzx7"},
            "INTERCOM_SIDECAR_AUTH_TOKEN: is too short to be a secret: use at least 16 characters",
        ),
        (
            {"INTERCOM_SIDECAR_AUTH_TOKEN": "qzx7 with a space, long enough"},
            "INTERCOM_SIDECAR_AUTH_TOKEN: contains spaces, control or non-ASCII characters (is there a second line?)",
        ),
    ],
)
def test_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**env)
    assert str(caught.value) == message
    assert "qzx7" not in str(caught.value), "a token is never echoed"


def test_reflection_off() -> None:
    assert load(INTERCOM_SIDECAR_REFLECTION="false").server.reflection is False


def test_auth_token_from_the_environment() -> None:
    server = load(INTERCOM_SIDECAR_AUTH_TOKEN=f" {AUTH}\n").server
    assert (server.auth_token, server.auth_token_file) == (Secret(AUTH), None)
    assert AUTH not in repr(server)


def test_auth_token_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "grpc-token"
    path.write_text(f"{AUTH}-from-file\n")
    server = load(INTERCOM_SIDECAR_AUTH_TOKEN=AUTH, INTERCOM_SIDECAR_AUTH_TOKEN_FILE=str(path)).server
    assert (server.auth_token, server.auth_token_file) == (Secret(f"{AUTH}-from-file"), path)


@pytest.mark.parametrize(("content", "problem"), [("", "is empty"), ("tiny", "is too short to be a secret")])
def test_unusable_auth_token_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "grpc-token"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_SIDECAR_AUTH_TOKEN_FILE=str(path))
    assert caught.value.key == "INTERCOM_SIDECAR_AUTH_TOKEN_FILE"
    assert problem in caught.value.problem


def test_missing_auth_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(INTERCOM_SIDECAR_AUTH_TOKEN_FILE=str(tmp_path / "nope"))
    assert str(caught.value) == (
        f"INTERCOM_SIDECAR_AUTH_TOKEN_FILE: cannot read {str(tmp_path / 'nope')!r}: No such file or directory"
    )
