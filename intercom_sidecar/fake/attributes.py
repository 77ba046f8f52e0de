"""Data attribute rules: Intercom's standard attributes, custom attribute names, and value types."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from intercom_sidecar.fake.state import DataAttribute

__all__ = [
    "CREATABLE_DATA_TYPES",
    "MODEL_WORDS",
    "invalid_name_message",
    "invalid_value_message",
    "standard_attributes",
]

#: ``data_type`` values ``POST /data_attributes`` accepts (``options`` makes a list attribute).
CREATABLE_DATA_TYPES: Final = frozenset({"string", "integer", "float", "boolean", "date", "datetime", "options"})

#: How Intercom's messages name each model's data ("people data", "company data").
MODEL_WORDS: Final = {"contact": "people", "company": "company"}

# (name, full_name, data_type, api_writable, label)
_CONTACT: Final = [
    ("id", "id", "string", False, "ID"),
    ("role", "role", "string", False, "Role"),
    ("external_id", "external_id", "string", True, "User ID"),
    ("name", "name", "string", True, "Name"),
    ("email", "email", "string", True, "Email"),
    ("email_domain", "email_domain", "string", False, "Email domain"),
    ("phone", "phone", "string", True, "Phone"),
    ("avatar", "avatar", "string", True, "Avatar"),
    ("owner_id", "owner_id", "integer", True, "Owner"),
    ("created_at", "created_at", "date", False, "Created at"),
    ("updated_at", "updated_at", "date", False, "Updated at"),
    ("signed_up_at", "signed_up_at", "date", True, "Signed up"),
    ("last_seen_at", "last_seen_at", "date", True, "Last seen"),
    ("last_contacted_at", "last_contacted_at", "date", False, "Last contacted"),
    ("last_replied_at", "last_replied_at", "date", False, "Last heard from"),
    ("unsubscribed_from_emails", "unsubscribed_from_emails", "boolean", True, "Unsubscribed from emails"),
    ("language_override", "language_override", "string", True, "Language override"),
]
_COMPANY: Final = [
    ("id", "id", "string", False, "ID"),
    ("company_id", "company_id", "string", False, "Company ID"),
    ("name", "name", "string", True, "Company name"),
    ("name", "plan.name", "string", False, "Plan"),
    ("id", "plan.id", "string", False, "Plan ID"),
    ("app_id", "app_id", "string", False, "App ID"),
    ("created_at", "created_at", "date", False, "Created at"),
    ("updated_at", "updated_at", "date", False, "Updated at"),
    ("remote_created_at", "remote_created_at", "date", True, "Company created at"),
    ("last_request_at", "last_request_at", "date", False, "Company last seen"),
    ("user_count", "user_count", "integer", False, "People"),
    ("session_count", "session_count", "integer", False, "Company web sessions"),
    ("monthly_spend", "monthly_spend", "float", True, "Monthly Spend"),
    ("size", "size", "integer", True, "Company size"),
    ("industry", "industry", "string", True, "Company industry"),
    ("website", "website", "string", True, "Company website"),
]


def standard_attributes() -> list[DataAttribute]:
    """Fresh copies of the built-in (non-custom) contact and company attributes."""
    from intercom_sidecar.fake.state import DataAttribute

    result = []
    for model, rows in (("contact", _CONTACT), ("company", _COMPANY)):
        for name, full_name, data_type, api_writable, label in rows:
            attr = DataAttribute(
                name=name,
                model=model,
                data_type=data_type,
                custom=False,
                label=label,
                api_writable=api_writable,
                messenger_writable=True,
                full_name=full_name,
            )
            result.append(attr)
    return result


def _allowed_char(ch: str) -> bool:
    return ch.isalnum() or ch in " _-" or unicodedata.category(ch) == "Sc"


def invalid_name_message(name: str) -> str | None:
    """Intercom's message when ``name`` cannot name a custom attribute, else ``None``."""
    if not name.strip() or not all(_allowed_char(ch) for ch in name):
        return "Your name for this attribute must only contain alphanumeric characters, currency symbols, and hyphens"
    return None


def _type_ok(data_type: str, value: Any) -> bool:
    if data_type == "string":
        return isinstance(value, str)
    if data_type == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if data_type == "integer":
        return isinstance(value, int)
    if data_type in ("float", "date", "datetime"):
        return isinstance(value, int | float)
    return True


def invalid_value_message(attr: DataAttribute, value: Any) -> str | None:
    """Why ``value`` cannot be stored in custom attribute ``attr``, or ``None`` when it can."""
    if value is None:
        return None
    if attr.options:
        if value not in attr.options:
            allowed = ", ".join(attr.options)
            return f"Custom attribute '{attr.name}' value must be one of the allowed values: {allowed}"
        return None
    if not _type_ok(attr.data_type, value):
        shown = "date (a Unix timestamp)" if attr.data_type in ("date", "datetime") else attr.data_type
        return f"Custom attribute '{attr.name}' must be of type {shown}"
    return None
