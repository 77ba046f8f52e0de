"""server/tls.py: the certificate files are checked at start, and followed (cheaply) while serving."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from intercom_sidecar.config import TlsConfig
from intercom_sidecar.errors import ConfigError
from intercom_sidecar.server.tls import CertificateFiles, server_credentials
from tests.certificates import CertificateAuthority, Issued, make_ca, needs_openssl

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, CertificateAuthority]:
    base = tmp_path_factory.mktemp("pki")
    return make_ca(base / "a", "Test CA A"), make_ca(base / "b", "Test CA B")


def install(issued: Issued, ca: CertificateAuthority, directory: Path) -> TlsConfig:
    """Copy a certificate, its key and its CA (as client CA) to the fixed names a deployment would use."""
    directory.mkdir(exist_ok=True)
    for source, name in ((issued.cert, "tls.crt"), (issued.key, "tls.key"), (ca.cert, "ca.crt")):
        shutil.copyfile(source, directory / f"{name}.new")
        os.replace(directory / f"{name}.new", directory / name)
    return TlsConfig(directory / "tls.crt", directory / "tls.key", client_ca_file=directory / "ca.crt")


def test_good_files_load_and_nothing_changes_until_they_do(
    pki: tuple[CertificateAuthority, ...], tmp_path: Path
) -> None:
    ca = pki[0]
    config = install(ca.issue("server"), ca, tmp_path)
    credentials, files = server_credentials(config)
    assert credentials is not None and files is not None
    assert [files.fetch() for _ in range(3)] == [None, None, None]
    assert files.reloads == 0
    assert server_credentials(None) == (None, None)


def test_changed_files_are_picked_up(pki: tuple[CertificateAuthority, ...], tmp_path: Path) -> None:
    a, b = pki
    config = install(a.issue("server"), a, tmp_path)
    files = CertificateFiles(config)
    files.initial()
    install(b.issue("server"), b, tmp_path)
    assert files.fetch() is not None
    assert files.reloads == 1
    assert files.fetch() is None, "the same files are not loaded twice"


def test_rewriting_the_same_bytes_is_no_reload(pki: tuple[CertificateAuthority, ...], tmp_path: Path) -> None:
    a = pki[0]
    issued = a.issue("server")
    config = install(issued, a, tmp_path)
    files = CertificateFiles(config)
    files.initial()
    install(issued, a, tmp_path)  # new inodes, same contents
    assert files.fetch() is None
    assert files.reloads == 0


def test_broken_new_files_keep_the_current_certificate_and_are_reported_once(
    pki: tuple[CertificateAuthority, ...], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pki
    config = install(a.issue("server"), a, tmp_path)
    files = CertificateFiles(config)
    files.initial()
    # Half a rotation: the new certificate is there, its key is not yet.
    shutil.copyfile(b.issue("server").cert, config.cert_file)
    with caplog.at_level(logging.WARNING, logger="intercom_sidecar.server.tls"):
        assert [files.fetch() for _ in range(3)] == [None, None, None]
    assert [record.getMessage() for record in caplog.records] == [
        f"Keeping the current TLS certificate: INTERCOM_SIDECAR_TLS_KEY_FILE: {str(config.key_file)!r} is not an "
        "unencrypted PEM private key matching the certificate in INTERCOM_SIDECAR_TLS_CERT_FILE."
    ]
    # The rotation completes: now it is used.
    install(b.issue("server"), b, tmp_path)
    assert files.fetch() is not None
    assert files.reloads == 1


def test_a_file_that_goes_missing_keeps_the_current_certificate(
    pki: tuple[CertificateAuthority, ...], tmp_path: Path
) -> None:
    a = pki[0]
    config = install(a.issue("server"), a, tmp_path)
    files = CertificateFiles(config)
    files.initial()
    config.key_file.unlink()
    assert files.fetch() is None
    assert files.fetch() is None


def _problem(config: TlsConfig) -> str:
    with pytest.raises(ConfigError) as caught:
        CertificateFiles(config).initial()
    return str(caught.value)


def test_unusable_files_are_config_errors_naming_the_variable(
    pki: tuple[CertificateAuthority, ...], tmp_path: Path
) -> None:
    a, b = pki
    good = install(a.issue("server"), a, tmp_path / "good")
    other_key = b.issue("server").key
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    empty = tmp_path / "empty.pem"
    empty.write_text("\n")
    missing = tmp_path / "missing.pem"

    assert _problem(TlsConfig(missing, good.key_file)) == (
        f"INTERCOM_SIDECAR_TLS_CERT_FILE: cannot read {str(missing)!r}: No such file or directory"
    )
    assert _problem(TlsConfig(good.cert_file, missing)) == (
        f"INTERCOM_SIDECAR_TLS_KEY_FILE: cannot read {str(missing)!r}: No such file or directory"
    )
    assert _problem(TlsConfig(empty, good.key_file)) == f"INTERCOM_SIDECAR_TLS_CERT_FILE: {str(empty)!r} is empty"
    assert _problem(TlsConfig(garbage, good.key_file)) == (
        f"INTERCOM_SIDECAR_TLS_CERT_FILE: {str(garbage)!r} does not hold a PEM certificate"
    )
    assert _problem(TlsConfig(good.key_file, good.key_file)) == (
        f"INTERCOM_SIDECAR_TLS_CERT_FILE: {str(good.key_file)!r} does not hold a PEM certificate"
    )
    assert _problem(TlsConfig(good.cert_file, other_key)) == (
        f"INTERCOM_SIDECAR_TLS_KEY_FILE: {str(other_key)!r} is not an unencrypted PEM private key matching the "
        "certificate in INTERCOM_SIDECAR_TLS_CERT_FILE"
    )
    assert _problem(TlsConfig(good.cert_file, good.cert_file)).startswith("INTERCOM_SIDECAR_TLS_KEY_FILE: ")
    assert _problem(TlsConfig(good.cert_file, good.key_file, client_ca_file=garbage)) == (
        f"INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE: {str(garbage)!r} does not hold PEM CA certificates"
    )
    assert _problem(TlsConfig(good.cert_file, good.key_file, client_ca_file=missing)) == (
        f"INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE: cannot read {str(missing)!r}: No such file or directory"
    )


def test_an_encrypted_key_is_refused_without_prompting(pki: tuple[CertificateAuthority, ...], tmp_path: Path) -> None:
    import subprocess

    a = pki[0]
    issued = a.issue("server")
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(issued.key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
        capture_output=True,
    )
    assert _problem(TlsConfig(issued.cert, encrypted)).startswith(
        f"INTERCOM_SIDECAR_TLS_KEY_FILE: {str(encrypted)!r} is not an unencrypted PEM private key"
    )
