"""What mapping produces: a plan of Intercom operations for one event, or a reason to send nothing.

Steps are Intercom operations, not raw HTTP requests: resolving a contact's or a company's Intercom id
(create, or learn the id from a 409) needs answers from Intercom, so the executor in `intercom/` turns each
step into requests and remembers ids. Bodies are final JSON bodies; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from intercom_sidecar.model.events import JsonObject

__all__ = [
    "AttachCompany",
    "ContactRef",
    "CreateDataEvent",
    "DetachCompany",
    "MergeLead",
    "Plan",
    "Skip",
    "Step",
    "UpsertCompany",
    "UpsertContact",
]


@dataclass(frozen=True, slots=True)
class ContactRef:
    """How a contact is known to us: by external_id (Segment's userId, or anonymousId for a lead), else by email."""

    external_id: str | None
    email: str | None
    role: str = "user"

    @property
    def key(self) -> str:
        """A cache key for the contact's Intercom id."""
        if self.external_id is not None:
            return f"{self.role}:external_id:{self.external_id}"
        return f"{self.role}:email:{(self.email or '').lower()}"

    @property
    def identity(self) -> dict[str, str]:
        """The smallest create body that names this contact."""
        body = {"role": self.role}
        if self.external_id is not None:
            body["external_id"] = self.external_id
        if self.email is not None:
            body["email"] = self.email
        return body


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
    """`POST /events` with `body` (event_name, created_at, user_id or email, metadata).

    When Intercom does not know the user yet (404, e.g. a track that overtook its identify) and
    `create_missing_contact` is set, the executor creates the contact and sends the event again.
    """

    contact: ContactRef
    body: JsonObject
    create_missing_contact: bool = True
    dropped_metadata_keys: int = 0
    """Property values left out because Intercom keeps ten metadata keys (counted in a metric)."""


@dataclass(frozen=True, slots=True)
class UpsertCompany:
    """`POST /companies` (Intercom upserts on `company_id`)."""

    company_id: str
    body: JsonObject
    attribute_types: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class AttachCompany:
    """Attach the contact to the company (`POST /contacts/{id}/companies`), unless known to be attached."""

    contact: ContactRef
    company_id: str


@dataclass(frozen=True, slots=True)
class DetachCompany:
    """Detach the contact from the company (`DELETE /contacts/{id}/companies/{company id}`)."""

    contact: ContactRef
    company_id: str


@dataclass(frozen=True, slots=True)
class MergeLead:
    """Merge the lead into the user (`POST /contacts/merge`); nothing to do when the lead is unknown."""

    lead: ContactRef
    user: ContactRef


Step = UpsertContact | CreateDataEvent | UpsertCompany | AttachCompany | DetachCompany | MergeLead


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Skip:
    """The event is intentionally not sent (its ack is FILTERED with this reason)."""

    reason: str
