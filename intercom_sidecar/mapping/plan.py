"""What mapping produces: a plan of Intercom operations for one event, or a reason to send nothing.

Steps are Intercom operations, not raw HTTP requests: resolving a contact's Intercom id (create, or learn the
id from a 409 and update) needs answers from Intercom, so the executor in `intercom/` turns each step into
requests. Bodies are final JSON bodies; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from intercom_sidecar.model.events import JsonObject

__all__ = ["ContactRef", "CreateDataEvent", "Plan", "Skip", "Step", "UpsertContact"]


@dataclass(frozen=True, slots=True)
class ContactRef:
    """How a contact is known to us: by external_id (Segment's userId), else by email."""

    external_id: str | None
    email: str | None

    @property
    def key(self) -> str:
        """A cache key for the contact's Intercom id."""
        if self.external_id is not None:
            return f"external_id:{self.external_id}"
        return f"email:{(self.email or '').lower()}"


@dataclass(frozen=True, slots=True)
class UpsertContact:
    """Create the contact, or update it if it exists. `body` is the full create/update body, custom
    attributes included; `attribute_types` gives each custom attribute's Intercom data_type so the executor
    can create attributes that do not exist yet."""

    contact: ContactRef
    body: JsonObject
    attribute_types: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CreateDataEvent:
    """`POST /events` with `body` (event_name, created_at, user_id or email, metadata)."""

    contact: ContactRef
    body: JsonObject


Step = UpsertContact | CreateDataEvent


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Skip:
    """The event is intentionally not sent (its ack is FILTERED with this reason)."""

    reason: str
