"""How the command line reaches a sidecar: TLS or mutual TLS, and the auth token, from flags or the environment.

So that an operator can still use `intercom-sidecar send` against a locked-down sidecar (see the README's
"Transport security"): `--tls-ca` turns TLS on and names the CA that signed the sidecar's certificate, `--tls-cert`
and `--tls-key` present a client certificate, and the token comes from `--auth-token-file`, else
`INTERCOM_SIDECAR_AUTH_TOKEN_FILE`, else `INTERCOM_SIDECAR_AUTH_TOKEN`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

from intercom_sidecar.errors import ConfigError

__all__ = ["add_connection_arguments", "call_metadata", "open_channel"]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", metavar="FILE", help="use TLS, trusting the CA certificates (PEM) in FILE")
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate (PEM) for mutual TLS; needs --tls-key")
    parser.add_argument("--tls-key", metavar="FILE", help="the client certificate's private key (PEM)")
    parser.add_argument(
        "--tls-server-name", metavar="NAME", help="the name to expect in the sidecar's certificate (default: the host)"
    )
    parser.add_argument(
        "--auth-token-file",
        metavar="FILE",
        default=os.environ.get("INTERCOM_SIDECAR_AUTH_TOKEN_FILE") or None,
        help="send `authorization: Bearer <token>` with the token in FILE (default INTERCOM_SIDECAR_AUTH_TOKEN_FILE, "
        "else the token in INTERCOM_SIDECAR_AUTH_TOKEN)",
    )


def open_channel(args: argparse.Namespace, target: str) -> grpc.aio.Channel:
    """A channel to `target`: TLS when --tls-ca or --tls-cert is given, plain text otherwise."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return grpc.aio.insecure_channel(target)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert" if args.tls_key else "--tls-key", "--tls-cert and --tls-key go together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read("--tls-ca", args.tls_ca) if args.tls_ca else None,
        private_key=_read("--tls-key", args.tls_key) if args.tls_key else None,
        certificate_chain=_read("--tls-cert", args.tls_cert) if args.tls_cert else None,
    )
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return grpc.aio.secure_channel(target, credentials, options=options)


def call_metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """`authorization: Bearer <token>` when a token is configured; nothing otherwise."""
    if args.auth_token_file:
        token = _read("--auth-token-file", args.auth_token_file).decode("utf-8", "replace").strip()
        if not token:
            raise ConfigError("--auth-token-file", f"{args.auth_token_file!r} is empty")
    else:
        token = os.environ.get("INTERCOM_SIDECAR_AUTH_TOKEN", "").strip()
    return (("authorization", f"Bearer {token}"),) if token else ()


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(flag, f"cannot read {path!r}: {exc.strerror}") from None
