"""Contact and data event endpoints: create, update, get, search, merge, and ``POST /events``."""

from __future__ import annotations

from typing import Any, Final

from intercom_sidecar.fake.api import ApiError, Call, Result, user_not_found
from intercom_sidecar.fake.search import search_contacts
from intercom_sidecar.fake.state import Contact, DataEvent, State
from intercom_sidecar.fake.validation import check_custom_attributes, check_fields, json_object
from intercom_sidecar.fake.views import admin_view, contact_list_view, contact_view

__all__ = ["ContactRoutes"]

_CONTACT_FIELDS: Final = {
    "role": "str",
    "external_id": "str",
    "email": "str",
    "email_verified": "bool?",
    "phone": "str?",
    "name": "str?",
    "avatar": "str?",
    "signed_up_at": "int?",
    "last_seen_at": "int?",
    "owner_id": "id?",
    "unsubscribed_from_emails": "bool?",
    "custom_attributes": "obj?",
}
_EVENT_FIELDS: Final = {
    "event_name": "str",
    "created_at": "int",
    "user_id": "str",
    "id": "str",
    "email": "str",
    "metadata": "obj?",
}
_MAX_EVENT_METADATA: Final = 10


def _conflict(contact: Contact) -> ApiError:
    return ApiError(409, "conflict", f"A contact matching those details already exists with id={contact.id}")


class ContactRoutes:
    """Contact, event and ``/me`` handlers over one :class:`State`."""

    def __init__(self, state: State, created_at: int) -> None:
        self.state = state
        self.created_at = created_at

    # helpers ----------------------------------------------------------------------------------------------

    def _contact(self, contact_id: str) -> Contact:
        contact = self.state.active_contact(contact_id)
        if contact is None:
            raise user_not_found()
        return contact

    def _check_identity(self, role: str, fields: dict[str, Any], current: Contact | None = None) -> None:
        external_id = fields.get("external_id")
        if external_id:
            other = self.state.contact_by_external_id(external_id)
            if other is not None and other is not current:
                raise _conflict(other)
        email = fields.get("email", current.email if current else None)
        if email and role == "user":
            for other in self.state.contacts_by_email(email):
                if other.role == "user" and other is not current:
                    raise _conflict(other)

    @staticmethod
    def _history(call: Call) -> bool:
        return call.query.get("include_merge_history", "").lower() == "true"

    # contacts ---------------------------------------------------------------------------------------------

    def me(self, call: Call) -> Result:
        return 200, admin_view(self.created_at)

    def create_contact(self, call: Call) -> Result:
        body = json_object(call.body)
        check_fields(body, _CONTACT_FIELDS)
        if not any(body.get(key) for key in ("email", "external_id", "role")):
            raise ApiError(400, "parameter_invalid", "A contact needs an email, an external_id or a role")
        role = body.get("role") or "user"
        if role not in ("user", "lead"):
            raise ApiError(400, "parameter_invalid", "role must be either user or lead")
        check_custom_attributes(self.state, "contact", body.get("custom_attributes"))
        self._check_identity(role, body)
        fields = self._normalise(body)
        return 200, contact_view(self.state.create_contact(role, fields))

    @staticmethod
    def _normalise(body: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in body.items() if k != "role"}
        if fields.get("owner_id") is not None:
            fields["owner_id"] = str(fields["owner_id"])
        if "unsubscribed_from_emails" in fields:
            fields["unsubscribed_from_emails"] = bool(fields["unsubscribed_from_emails"])
        return fields

    def update_contact(self, call: Call) -> Result:
        contact = self._contact(call.params[0])
        body = json_object(call.body)
        check_fields(body, _CONTACT_FIELDS)
        role = body.get("role", contact.role)
        if role not in ("user", "lead"):
            raise ApiError(400, "parameter_invalid", "role must be either user or lead")
        check_custom_attributes(self.state, "contact", body.get("custom_attributes"))
        self._check_identity(role, body, contact)
        fields = self._normalise(body)
        fields["role"] = role
        self.state.update_contact(contact, fields)
        return 200, contact_view(contact, include_merge_history=self._history(call))

    def get_contact(self, call: Call) -> Result:
        contact = self.state.contact(call.params[0])
        if contact is None:
            raise user_not_found()
        if contact.merged_into is not None:
            final = contact
            for _ in range(3):
                target = self.state.contact(final.merged_into or "")
                if target is None:
                    break
                final = target
                if final.merged_into is None:
                    break
            raise ApiError(
                410,
                "contact_merged",
                "This contact has been merged. See the 'Link' header for the canonical contact.",
                headers=[("link", f'</contacts/{final.id}>; rel="canonical"')],
            )
        return 200, contact_view(contact, include_merge_history=self._history(call))

    def list_contacts(self, call: Call) -> Result:
        pagination = {
            "per_page": call.query.get("per_page"),
            "starting_after": call.query.get("starting_after"),
        }
        all_contacts = {"operator": "AND", "value": [{"field": "id", "operator": "!=", "value": ""}]}
        page, total, per_page, cursor = search_contacts(self.state, {"query": all_contacts, "pagination": pagination})
        return 200, contact_list_view(page, total, per_page, cursor, include_merge_history=self._history(call))

    def search(self, call: Call) -> Result:
        body = json_object(call.body)
        check_fields(body, {"query": "obj", "pagination": "obj?", "sort": "obj"}, required=["query"])
        page, total, per_page, cursor = search_contacts(self.state, body)
        history = self._history(call)
        return 200, contact_list_view(page, total, per_page, cursor, include_merge_history=history)

    def merge(self, call: Call) -> Result:
        body = json_object(call.body)
        check_fields(body, {"from": "str", "into": "str", "skip_duplicate_validation": "bool"}, ["from", "into"])
        lead, user = self._contact(body["from"]), self._contact(body["into"])
        if lead.role != "lead" or user.role != "user" or lead is user:
            raise ApiError(400, "invalid_merge", "Only a contact with role lead can be merged into a user")
        same_email = bool(lead.email and user.email and lead.email.lower() == user.email.lower())
        same_phone = bool(lead.phone and lead.phone == user.phone)
        if not (same_email or same_phone or body.get("skip_duplicate_validation")):
            raise ApiError(
                400,
                "invalid_merge",
                "Contacts can only be merged when they are duplicates (matching email or phone). "
                "Pass skip_duplicate_validation=true to override this check.",
            )
        for key in ("name", "phone", "avatar", "email", "signed_up_at", "last_seen_at"):
            if getattr(user, key) is None and getattr(lead, key) is not None:
                setattr(user, key, getattr(lead, key))
        for key, value in lead.custom_attributes.items():
            user.custom_attributes.setdefault(key, value)
        user.company_ids.extend(c for c in lead.company_ids if c not in user.company_ids)
        self.state.move_events(lead.id, user.id)
        now = self.state.now()
        user.merge_history.append(
            {
                "type": "merge_history",
                "source_contact_id": lead.id,
                "source_contact_role": "lead",
                "merged_at": now,
            }
        )
        self.state.retire_contact(lead, user.id)
        self.state.update_contact(user, {})
        return 200, contact_view(user, include_merge_history=self._history(call))

    # events -----------------------------------------------------------------------------------------------

    def create_event(self, call: Call) -> Result:
        body = json_object(call.body)
        check_fields(body, _EVENT_FIELDS, required=["event_name", "created_at"])
        contact: Contact | None
        if body.get("id"):
            contact = self.state.active_contact(body["id"])
        elif body.get("user_id"):
            contact = self.state.contact_by_external_id(body["user_id"])
        elif body.get("email"):
            contact = self.state.contact_by_email(body["email"])
        else:
            raise ApiError(400, "parameter_not_found", "user_id, id or email not specified")
        if contact is None:
            raise user_not_found()
        metadata = dict(list((body.get("metadata") or {}).items())[:_MAX_EVENT_METADATA])
        event = DataEvent(
            event_name=body["event_name"],
            created_at=body["created_at"],
            contact_id=contact.id,
            user_id=contact.external_id,
            email=contact.email,
            metadata=metadata,
            received_at=self.state.now(),
        )
        self.state.add_event(event)
        return 202, None
