"""TLS and mutual TLS for the gRPC API, from PEM files that are picked up again when they change.

    TlsConfig ─▶ CertificateFiles.initial() (checked at start: ConfigError naming the variable)
              └▶ grpc.dynamic_ssl_server_credentials(initial, fetch) ─▶ fetch() on each new TLS handshake

`fetch()` runs on gRPC's threads before each handshake. It compares the files' stamps (`file_stamp`: inode, size,
mtime) with the last ones seen, which costs a few microseconds, and reads the files only when they changed. New
files are checked (certificate parses, key matches it, client CA parses) before gRPC sees them: broken or
half-written files leave the current certificate in use, and are reported once, not on every handshake. A
Kubernetes Secret or cert-manager volume swaps all its files at once through a symlink, which this follows.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from intercom_sidecar.config import TlsConfig
from intercom_sidecar.config_secrets import file_stamp
from intercom_sidecar.errors import ConfigError

__all__ = ["CertificateFiles", "server_credentials"]

_log = logging.getLogger(__name__)

CERT_KEY = "INTERCOM_SIDECAR_TLS_CERT_FILE"
KEY_KEY = "INTERCOM_SIDECAR_TLS_KEY_FILE"
CLIENT_CA_KEY = "INTERCOM_SIDECAR_TLS_CLIENT_CA_FILE"

_Stat = tuple[tuple[int, int, int, int] | None, ...]


@dataclass(frozen=True, slots=True)
class _Material:
    """The bytes of the files, as checked."""

    cert: bytes
    key: bytes
    client_ca: bytes | None

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], root_certificates=self.client_ca)


class CertificateFiles:
    """The certificate files of one server, and what was last loaded from them."""

    def __init__(self, config: TlsConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._stat: _Stat = ()
        self._material: _Material | None = None
        self.reloads = 0
        """How many times changed files were put in use (for tests and logs)."""

    def initial(self) -> grpc.ServerCertificateConfiguration:
        """The configuration to start with; ConfigError naming the variable whose file is unusable."""
        with self._lock:
            self._stat = self._stat_files()
            self._material = _read_checked(self._config)
            return self._material.configuration()

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate configuration fetcher: a new configuration when the files changed, else None."""
        with self._lock:
            stat = self._stat_files()
            if stat == self._stat:
                return None
            self._stat = stat  # whatever comes of this look, the same files are not examined again
            try:
                material = _read_checked(self._config)
            except ConfigError as error:
                _log.warning("Keeping the current TLS certificate: %s.", error)
                return None
            except Exception:  # gRPC would log and carry on; say what happened instead, once
                _log.exception("Keeping the current TLS certificate: reading the new files failed.")
                return None
            if material == self._material:
                return None
            self._material = material
            self.reloads += 1
        _log.warning("Picked up a new TLS certificate from `%s`.", self._config.cert_file)
        return material.configuration()

    def _stat_files(self) -> _Stat:
        """What tells the files changed; an unreadable file is reported by the read that follows a change."""
        return tuple(file_stamp(path) for _, path in _files(self._config))


def server_credentials(config: TlsConfig | None) -> tuple[grpc.ServerCredentials | None, CertificateFiles | None]:
    """Credentials for `add_secure_port` (None: plain text), and the files they follow."""
    if config is None:
        return None, None
    files = CertificateFiles(config)
    credentials = grpc.dynamic_ssl_server_credentials(
        files.initial(),
        files.fetch,  # type: ignore[arg-type]  # None means "no change" (grpc's documented contract; stubs lag)
        require_client_authentication=config.client_ca_file is not None,
    )
    return credentials, files


def _files(config: TlsConfig) -> list[tuple[str, Path]]:
    files = [(CERT_KEY, config.cert_file), (KEY_KEY, config.key_file)]
    if config.client_ca_file is not None:
        files.append((CLIENT_CA_KEY, config.client_ca_file))
    return files


def _read_checked(config: TlsConfig) -> _Material:
    """Read the files, and check them with OpenSSL: the certificate parses, the key is its key, the CA parses.

    The key is checked from its file (OpenSSL's only way), so the files are read before and after: if they changed
    in between, they are being replaced, and are looked at again on the next handshake."""
    before = _read_all(config)
    _check(config, before)
    if _read_all(config) != before:
        raise ConfigError(CERT_KEY, "the certificate files changed while being read")
    return before


def _read_all(config: TlsConfig) -> _Material:
    cert = _read(CERT_KEY, config.cert_file)
    key = _read(KEY_KEY, config.key_file)
    ca = _read(CLIENT_CA_KEY, config.client_ca_file) if config.client_ca_file is not None else None
    return _Material(cert, key, ca)


def _read(key: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {str(path)!r}: {exc.strerror}") from None
    if not data.strip():
        raise ConfigError(key, f"{str(path)!r} is empty")
    return data


def _check(config: TlsConfig, material: _Material) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _check_certificates(CERT_KEY, config.cert_file, material.cert, "a PEM certificate")
    try:
        # A password callback that gives none: an encrypted key is refused instead of prompting on the terminal.
        context.load_cert_chain(config.cert_file, config.key_file, password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError):
        raise ConfigError(
            KEY_KEY,
            f"{str(config.key_file)!r} is not an unencrypted PEM private key matching the certificate in {CERT_KEY}",
        ) from None
    if material.client_ca is not None:
        assert config.client_ca_file is not None
        _check_certificates(CLIENT_CA_KEY, config.client_ca_file, material.client_ca, "PEM CA certificates")


def _check_certificates(key: str, path: Path, data: bytes, what: str) -> None:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ConfigError(key, f"{str(path)!r} does not hold {what}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise ConfigError(key, f"{str(path)!r} does not hold {what}") from None
