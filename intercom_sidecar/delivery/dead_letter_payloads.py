"""What a dead letter keeps of its event at rest (`INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS`).

A dead letter can wait on disk for days, so an operator may choose how much of the event it keeps:

- `keep` (the default): the payload as accepted, so the dead letter can be replayed.
- `drop`: no payload. The dead letter keeps its message id, type, user key, reason, attempts and trace id: it can
  be listed, judged and purged, but not replayed.
- `encrypt`: the payload sealed with AES-256-GCM under the key in `INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE`;
  replaying or showing it needs the same key.

Each dead letter records how its payload is stored (`payload_form`): `kept`, `dropped` or `aes256gcm`. A sealed
payload is `key id (8 bytes) | nonce (12 bytes) | ciphertext and tag`, with the message id as associated data,
so a payload copied onto another dead letter fails to open. The key id (the first 8 bytes of SHA-256 over a label
and the key) tells a wrong key from a damaged payload and reveals nothing usable about the key.

Pending events are always stored in clear: the sidecar must be able to send them after a restart.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from intercom_sidecar.config_secrets import dead_letter_key_bytes
from intercom_sidecar.delivery.spool import SpoolError

__all__ = [
    "DROPPED",
    "ENCRYPTED",
    "KEEP",
    "KEPT",
    "DeadLetterKey",
    "DeadLetterPayloadError",
    "DeadLetterPayloads",
]

KEPT = "kept"
DROPPED = "dropped"
ENCRYPTED = "aes256gcm"

_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_KEY_ID_LABEL = b"intercom-sidecar dead-letter key id\x00"


class DeadLetterPayloadError(SpoolError):
    """A dead letter's event cannot be given back: its payload was dropped, or it is encrypted and the key is
    missing or another one. The message says which, and never holds key material."""


class DeadLetterKey:
    """An AES-256 key. Never shows itself in `repr` or `str`; `id` is safe to print."""

    __slots__ = ("_aead", "id")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a dead-letter key is 32 bytes")
        self._aead = AESGCM(key)
        self.id = hashlib.sha256(_KEY_ID_LABEL + key).digest()[:_KEY_ID_BYTES]

    @classmethod
    def from_base64(cls, text: str) -> DeadLetterKey:
        """From the contents of the key file (standard or URL-safe base64), as `config` validated it."""
        return cls(dead_letter_key_bytes(text))

    def seal(self, message_id: str, payload: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return self.id + nonce + self._aead.encrypt(nonce, payload, message_id.encode())

    def open(self, message_id: str, sealed: bytes) -> bytes:
        key_id, nonce = sealed[:_KEY_ID_BYTES], sealed[_KEY_ID_BYTES : _KEY_ID_BYTES + _NONCE_BYTES]
        if key_id != self.id:
            raise DeadLetterPayloadError(
                f"the dead letter `{message_id}` was encrypted with another key (key id {key_id.hex()}; "
                f"INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE holds key id {self.id.hex()})"
            )
        try:
            return self._aead.decrypt(nonce, sealed[_KEY_ID_BYTES + _NONCE_BYTES :], message_id.encode())
        except InvalidTag:
            raise DeadLetterPayloadError(
                f"the encrypted payload of the dead letter `{message_id}` is damaged (it fails authentication)"
            ) from None

    def __repr__(self) -> str:
        return f"DeadLetterKey(id={self.id.hex()})"

    __str__ = __repr__


class DeadLetterPayloads:
    """Seals payloads as they become dead letters, and opens them again for replay or `dlq show`.

    `describe(payload)` names the event's call type (identify, track, ...), kept in clear with every dead letter;
    `key` is needed to encrypt, and to open what was encrypted (whatever the mode is now).
    """

    def __init__(
        self, mode: str = "keep", key: DeadLetterKey | None = None, describe: Callable[[bytes], str] | None = None
    ) -> None:
        if mode not in ("keep", "drop", "encrypt"):
            raise ValueError(f"unknown dead-letter payload mode {mode!r}")
        if mode == "encrypt" and key is None:
            raise ValueError("encrypting dead letters needs a key")
        self.mode = mode
        self._key = key
        self._describe = describe

    def describe(self, payload: bytes) -> str:
        return self._describe(payload) if self._describe is not None else ""

    def seal(self, message_id: str, payload: bytes) -> tuple[str, bytes]:
        """(payload_form, stored bytes) for a payload becoming a dead letter."""
        if self.mode == "drop":
            return DROPPED, b""
        if self.mode == "encrypt":
            assert self._key is not None
            return ENCRYPTED, self._key.seal(message_id, payload)
        return KEPT, payload

    def open(self, message_id: str, form: str, stored: bytes) -> bytes:
        """The payload as accepted; DeadLetterPayloadError when it cannot be had."""
        if form == KEPT:
            return stored
        if form == DROPPED:
            raise DeadLetterPayloadError(
                f"the dead letter `{message_id}` kept no payload (INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS=drop when it "
                "was stored), so it cannot be replayed or shown; purge it when it is no longer needed"
            )
        if form == ENCRYPTED:
            if self._key is None:
                raise DeadLetterPayloadError(
                    f"the dead letter `{message_id}` is encrypted: set INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE "
                    "(or `dlq --key-file`) to the key it was encrypted with"
                )
            return self._key.open(message_id, stored)
        raise DeadLetterPayloadError(f"the dead letter `{message_id}` has a payload of unknown form {form!r}")

    def __repr__(self) -> str:
        return f"DeadLetterPayloads(mode={self.mode!r}, key={self._key!r})"


KEEP = DeadLetterPayloads()
"""Payloads kept as they are, no key: the default, and what the operator store uses without a key."""
