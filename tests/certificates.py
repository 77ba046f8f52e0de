"""Throwaway certificate authorities and certificates for TLS tests, made at test time with the `openssl` CLI.

EC P-256 keys (fast to make), two-day validity, nothing reused between test sessions. A server certificate names
`localhost` and `127.0.0.1`; a client certificate is for client authentication only.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["CertificateAuthority", "Issued", "make_ca", "needs_openssl"]

_OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(_OPENSSL is None, reason="the TLS tests make their certificates with `openssl`")
_serials = itertools.count(1000)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    serial: int


@dataclass(frozen=True)
class CertificateAuthority:
    cert: Path
    key: Path
    directory: Path

    def issue(self, name: str, *, client: bool = False) -> Issued:
        """A certificate for `name` signed by this CA, in this CA's directory: `<name>.pem` and `<name>.key`."""
        key, csr, cert = (self.directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        extensions = self.directory / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        names = "DNS:client.test" if client else "DNS:localhost,IP:127.0.0.1"
        extensions.write_text(
            f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={usage}\nsubjectAltName={names}\n"
        )
        _openssl("req", "-new", *_EC_KEY, "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        serial = next(_serials)
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-set_serial", str(serial),
            "-days", "2", "-out", cert, "-extfile", extensions,
        )  # fmt: skip
        return Issued(cert, key, serial)


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def make_ca(directory: Path, name: str) -> CertificateAuthority:
    """A self-signed CA in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "ca.pem", directory / "ca.key"
    _openssl(
        "req", "-x509", *_EC_KEY, "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return CertificateAuthority(cert, key, directory)


def _openssl(*args: str | Path) -> None:
    assert _OPENSSL is not None
    subprocess.run([_OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=30)
