"""Segment company objects (identify `traits.company` / `traits.companies`, group traits) -> Intercom companies."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from intercom_sidecar.mapping.fields import custom_attributes, truncate, unix_time
from intercom_sidecar.mapping.plan import UpsertCompany
from intercom_sidecar.model.events import JsonObject

__all__ = ["CompanyChange", "company_changes", "company_id_for_name", "company_upsert"]

# Segment trait -> Intercom company field, for the standard fields; everything else is a custom attribute.
_NOT_CUSTOM = frozenset(
    {"id", "company_id", "name", "plan", "monthly_spend", "employees", "size", "industry", "website",
     "createdAt", "created_at", "remove"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CompanyChange:
    """One company named on an identify: upsert and attach it, or (`remove`) detach the contact from it."""

    company_id: str
    upsert: UpsertCompany | None
    remove: bool


def company_id_for_name(name: str) -> str:
    """A stable company id for a company known only by its name."""
    return "name-" + hashlib.sha256(name.strip().encode()).hexdigest()[:24]


def company_changes(traits: JsonObject, *, active: bool = True) -> Iterator[CompanyChange]:
    """The companies of an identify: `traits.company` (object or name) and `traits.companies` (a list).

    `active` false (the identify's `context.active`) leaves the companies' last request time alone too."""
    company = traits.get("company")
    listed = traits.get("companies")
    for value in [company, *(listed if isinstance(listed, list) else [])]:
        change = _change(value, active)
        if change is not None:
            yield change


def company_upsert(company_id: str, traits: JsonObject, *, active: bool = True) -> UpsertCompany:
    """The `POST /companies` step for a company and its traits (a Segment group's traits, or a company object)."""
    body: dict[str, Any] = {"company_id": company_id}
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        body["name"] = truncate(name.strip())
    for key in ("plan", "industry", "website"):
        value = traits.get(key)
        if isinstance(value, str) and value.strip():
            body[key] = truncate(value.strip())
    size = _whole_number(traits.get("employees", traits.get("size")))
    if size is not None:
        body["size"] = size
    spend = _whole_number(traits.get("monthly_spend"))  # Intercom keeps whole units only
    if spend is not None:
        body["monthly_spend"] = spend
    created = unix_time(traits.get("createdAt", traits.get("created_at")))
    if created is not None:
        body["remote_created_at"] = created
    if active:
        body["update_last_request_at"] = True
    custom, types = custom_attributes({key: value for key, value in traits.items() if key not in _NOT_CUSTOM})
    if custom:
        body["custom_attributes"] = custom
    return UpsertCompany(company_id=company_id, body=body, attribute_types=types)


def _change(value: Any, active: bool) -> CompanyChange | None:
    if isinstance(value, str) and value.strip():
        company_id = company_id_for_name(value)
        return CompanyChange(company_id, company_upsert(company_id, {"name": value.strip()}, active=active), False)
    if not isinstance(value, Mapping):
        return None
    found = _id_of(value)
    if found is None:
        return None
    if value.get("remove") is True:
        return CompanyChange(found, None, remove=True)
    return CompanyChange(found, company_upsert(found, value, active=active), remove=False)


def _id_of(company: Mapping[str, Any]) -> str | None:
    for key in ("id", "company_id"):
        value = company.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    name = company.get("name")
    if isinstance(name, str) and name.strip():
        return company_id_for_name(name)
    return None


def _whole_number(value: Any) -> int | None:
    if isinstance(value, str):  # Segment's spec types `employees` as a string ("50")
        try:
            value = float(value.strip())
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value >= 0 else None
