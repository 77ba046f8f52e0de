"""In-memory model of one fake Intercom workspace: contacts, companies, data events, data attributes."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from intercom_sidecar.fake.attributes import standard_attributes

__all__ = ["Company", "Contact", "DataAttribute", "DataEvent", "State"]

JSON = Any


@dataclass(slots=True)
class Contact:
    id: str
    role: str
    created_at: int
    updated_at: int
    external_id: str | None = None
    email: str | None = None
    name: str | None = None
    phone: str | None = None
    avatar: str | None = None
    owner_id: str | None = None
    signed_up_at: int | None = None
    last_seen_at: int | None = None
    unsubscribed_from_emails: bool = False
    custom_attributes: dict[str, JSON] = field(default_factory=dict)
    company_ids: list[str] = field(default_factory=list)
    merged_into: str | None = None
    merge_history: list[dict[str, JSON]] = field(default_factory=list)


@dataclass(slots=True)
class Company:
    id: str
    company_id: str
    created_at: int
    updated_at: int
    name: str | None = None
    plan: str | None = None
    size: int | None = None
    industry: str | None = None
    website: str | None = None
    monthly_spend: int | None = None
    remote_created_at: int | None = None
    last_request_at: int | None = None
    custom_attributes: dict[str, JSON] = field(default_factory=dict)


@dataclass(slots=True)
class DataEvent:
    event_name: str
    created_at: int
    contact_id: str
    user_id: str | None
    email: str | None
    metadata: dict[str, JSON]
    received_at: int


@dataclass(slots=True)
class DataAttribute:
    """A contact or company attribute. ``data_type`` is the type it was created with."""

    name: str
    model: str
    data_type: str
    custom: bool
    id: int | None = None
    label: str = ""
    description: str = ""
    options: list[str] = field(default_factory=list)
    api_writable: bool = True
    messenger_writable: bool = False
    archived: bool = False
    created_at: int | None = None
    updated_at: int | None = None
    full_name: str = ""

    def __post_init__(self) -> None:
        if not self.full_name:
            self.full_name = f"custom_attributes.{self.name}" if self.custom else self.name


class State:
    """Contacts, companies, data events and data attributes of the fake workspace."""

    def __init__(self, clock: Callable[[], float], seed: int = 0) -> None:
        self._clock = clock
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        self._rng = random.Random(self._seed)
        self.contacts: dict[str, Contact] = {}
        self.companies: dict[str, Company] = {}
        self.events: list[DataEvent] = []
        self.data_attributes: list[DataAttribute] = standard_attributes()
        self._next_attribute_id = 1
        self._by_external_id: dict[str, str] = {}
        self._by_email: dict[str, list[str]] = {}
        self._by_company_id: dict[str, str] = {}
        self._event_keys: set[tuple[str, str, int]] = set()

    def now(self) -> int:
        return int(self._clock())

    def new_id(self) -> str:
        """A 24-hex-digit id, like Intercom's; deterministic for a given seed."""
        while True:
            candidate = f"{self._rng.getrandbits(96):024x}"
            if candidate not in self.contacts and candidate not in self.companies:
                return candidate

    # contacts -------------------------------------------------------------------------------------------

    def contact(self, contact_id: str) -> Contact | None:
        """The contact with this Intercom id, merged ones included."""
        return self.contacts.get(contact_id)

    def active_contact(self, contact_id: str) -> Contact | None:
        found = self.contacts.get(contact_id)
        return found if found is not None and found.merged_into is None else None

    def contact_by_external_id(self, external_id: str) -> Contact | None:
        found = self._by_external_id.get(external_id)
        return self.contacts[found] if found is not None else None

    def contacts_by_email(self, email: str) -> list[Contact]:
        return [self.contacts[i] for i in self._by_email.get(email.lower(), [])]

    def contact_by_email(self, email: str) -> Contact | None:
        """The user with this email, else the oldest lead with it."""
        found = self.contacts_by_email(email)
        users = [c for c in found if c.role == "user"]
        candidates = users or found
        return candidates[0] if candidates else None

    def active_contacts(self) -> Iterable[Contact]:
        return (c for c in self.contacts.values() if c.merged_into is None)

    def create_contact(self, role: str, fields: dict[str, JSON]) -> Contact:
        now = self.now()
        contact = Contact(id=self.new_id(), role=role, created_at=now, updated_at=now)
        self.contacts[contact.id] = contact
        self.update_contact(contact, fields, touch=False)
        return contact

    def update_contact(self, contact: Contact, fields: dict[str, JSON], *, touch: bool = True) -> None:
        """Apply already-validated ``fields`` (custom attributes are merged) and keep the indexes right."""
        self._unindex(contact)
        for key, value in fields.items():
            if key == "custom_attributes":
                contact.custom_attributes.update(value or {})
            elif key != "email_verified":
                setattr(contact, key, value)
        if touch:
            contact.updated_at = self.now()
        self._index(contact)

    def retire_contact(self, contact: Contact, merged_into: str) -> None:
        self._unindex(contact)
        contact.merged_into = merged_into

    def _index(self, contact: Contact) -> None:
        if contact.merged_into is not None:
            return
        if contact.external_id:
            self._by_external_id[contact.external_id] = contact.id
        if contact.email:
            self._by_email.setdefault(contact.email.lower(), []).append(contact.id)

    def _unindex(self, contact: Contact) -> None:
        if contact.external_id and self._by_external_id.get(contact.external_id) == contact.id:
            del self._by_external_id[contact.external_id]
        if contact.email:
            ids = self._by_email.get(contact.email.lower(), [])
            if contact.id in ids:
                ids.remove(contact.id)

    # companies ------------------------------------------------------------------------------------------

    def company(self, company_id: str) -> Company | None:
        """The company with this Intercom id."""
        return self.companies.get(company_id)

    def company_by_company_id(self, company_id: str) -> Company | None:
        """The company with this ``company_id`` (the id the customer chose)."""
        found = self._by_company_id.get(company_id)
        return self.companies[found] if found is not None else None

    def create_company(self, company_id: str) -> Company:
        now = self.now()
        company = Company(id=self.new_id(), company_id=company_id, created_at=now, updated_at=now)
        self.companies[company.id] = company
        self._by_company_id[company_id] = company.id
        return company

    def user_count(self, company: Company) -> int:
        return sum(1 for c in self.active_contacts() if company.id in c.company_ids)

    # events ---------------------------------------------------------------------------------------------

    def add_event(self, event: DataEvent) -> bool:
        """Store ``event`` unless it duplicates one (same contact, name and time). True when stored."""
        key = (event.contact_id, event.event_name, event.created_at)
        if key in self._event_keys:
            return False
        self._event_keys.add(key)
        self.events.append(event)
        return True

    def events_for(self, contact_id: str) -> list[DataEvent]:
        return [e for e in self.events if e.contact_id == contact_id]

    def move_events(self, from_id: str, into_id: str) -> None:
        for event in self.events:
            if event.contact_id == from_id:
                event.contact_id = into_id

    # data attributes ------------------------------------------------------------------------------------

    def attribute(self, model: str, name: str, *, custom: bool | None = None) -> DataAttribute | None:
        for attr in self.data_attributes:
            if attr.model == model and attr.name == name and (custom is None or attr.custom == custom):
                return attr
        return None

    def custom_attribute(self, model: str, name: str) -> DataAttribute | None:
        return self.attribute(model, name, custom=True)

    def add_data_attribute(
        self,
        name: str,
        model: str,
        data_type: str,
        *,
        options: list[str] | None = None,
        description: str = "",
        messenger_writable: bool = False,
    ) -> DataAttribute:
        """Create a custom attribute (no validation: the HTTP route validates what clients send)."""
        now = self.now()
        attr = DataAttribute(
            name=name,
            model=model,
            data_type=data_type,
            custom=True,
            id=self._next_attribute_id,
            label=name,
            description=description,
            options=list(options or []),
            messenger_writable=messenger_writable,
            created_at=now,
            updated_at=now,
        )
        self._next_attribute_id += 1
        self.data_attributes.append(attr)
        return attr

    # inspection -----------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, JSON]:
        """Everything, as plain JSON-ready dicts (internal field names)."""
        return {
            "contacts": [asdict(c) for c in self.contacts.values()],
            "companies": [asdict(c) for c in self.companies.values()],
            "events": [asdict(e) for e in self.events],
            "data_attributes": [asdict(a) for a in self.data_attributes],
        }
