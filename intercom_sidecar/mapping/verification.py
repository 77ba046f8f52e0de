"""Intercom identity verification: `integrations.Intercom.user_hash` is HMAC-SHA256(secret, userId) in hex."""

from __future__ import annotations

import hashlib
import hmac

from intercom_sidecar.config import Secret
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.model.events import Event

__all__ = ["check_user_hash", "user_hash"]


def user_hash(secret: Secret, user_id: str) -> str:
    """The hash Intercom's Messenger expects for `user_id` (hex HMAC-SHA256 keyed with the secret)."""
    return hmac.new(secret.reveal().encode(), user_id.encode(), hashlib.sha256).hexdigest()


def check_user_hash(event: Event, secret: Secret) -> None:
    """Raise InvalidEventError when the event carries a user_hash that does not match its userId."""
    settings = event.integrations.get("Intercom")
    given = settings.get("user_hash") if isinstance(settings, dict) else None
    if given is None:
        return
    if not isinstance(given, str) or event.user_id is None:
        raise InvalidEventError("integrations.Intercom.user_hash", "needs a userId and a hex string")
    # Compared as bytes: compare_digest raises TypeError for str holding non-ASCII characters.
    if not hmac.compare_digest(given.strip().lower().encode(), user_hash(secret, event.user_id).encode()):
        raise InvalidEventError("integrations.Intercom.user_hash", "does not match userId")
