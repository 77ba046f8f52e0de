"""Companies: upsert them, and attach or detach contacts, skipping what is known to be done already.

Remembers company_id -> Intercom id, the field values last written for each company, and which contact/company
attachments exist, so a repeated group or identify costs no calls. Intercom's upsert changes only the fields it is
given, so a write whose every field already has that value is skipped, even when different sources describe the
company with different fields (a group's traits, an identify's `company`). `update_last_request_at` alone causes a
write only once per `last_request_resolution_seconds`. A company unknown here is looked up by company_id
(`GET /companies?company_id=`) only when a detach needs its Intercom id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from intercom_sidecar.errors import RetryableError
from intercom_sidecar.intercom.attributes import DataAttributes
from intercom_sidecar.intercom.cache import LruCache
from intercom_sidecar.intercom.client import IntercomClient, IntercomResponse, id_of, raise_for
from intercom_sidecar.mapping.plan import UpsertCompany

__all__ = ["Companies", "StaleContactError"]

_TOUCH = "update_last_request_at"


@dataclass(slots=True)
class _Known:
    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    """Field values written so far (custom attributes under their own names, prefixed `custom_attributes.`)."""
    touched_at: float = float("-inf")


class Companies:
    def __init__(
        self,
        client: IntercomClient,
        attributes: DataAttributes,
        *,
        clock: Callable[[], float],
        cache_size: int,
        last_request_resolution_seconds: float,
    ) -> None:
        self._client = client
        self._attributes = attributes
        self._clock = clock
        self._known: LruCache[str, _Known] = LruCache(cache_size)
        self._attached: LruCache[tuple[str, str], bool] = LruCache(cache_size)
        self._resolution = last_request_resolution_seconds
        self.unchanged_skipped = 0

    async def upsert(self, step: UpsertCompany) -> str:
        body = await self._attributes.writable_body("company", step.body, step.attribute_types)
        fields = _fields(body)
        now = self._clock()
        known = self._known.get(step.company_id)
        if known is not None and not self._changes(known, fields, touch=bool(body.get(_TOUCH)), now=now):
            self.unchanged_skipped += 1
            return known.id
        response = await self._client.request("POST", "/companies", endpoint="POST /companies", body=body)
        raise_for(response, self._clock())
        company = id_of(response)
        if known is None or known.id != company:
            known = _Known(company)
        known.fields.update(fields)
        if body.get(_TOUCH):
            known.touched_at = now
        self._known.put(step.company_id, known)
        return company

    def _changes(self, known: _Known, fields: Mapping[str, Any], *, touch: bool, now: float) -> bool:
        if any(known.fields.get(name, _MISSING) != value for name, value in fields.items()):
            return True
        return touch and now - known.touched_at >= self._resolution

    async def attach(self, contact_id: str, company_id: str) -> None:
        company = await self._intercom_id(company_id)
        if company is None or self._attached.get((contact_id, company)):
            return
        response = await self._client.request(
            "POST",
            f"/contacts/{contact_id}/companies",
            endpoint="POST /contacts/{id}/companies",
            body={"id": company},
        )
        if response.status == 404 and response.error[0] == "not_found":
            raise StaleContactError(response)
        if response.status == 404 and response.error[0] == "company_not_found":
            # The remembered company is gone (deleted or merged in Intercom): forget it, so the retry upserts it
            # again and attaches to the new id.
            self.forget(company_id)
            raise RetryableError(
                "the remembered company no longer exists; it is created again on the retry",
                status=404,
                code="company_not_found",
                endpoint=response.endpoint,
            )
        raise_for(response, self._clock())
        self._attached.put((contact_id, company), True)

    @property
    def cache_lookups(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(hits, misses) of the company ids, and of the attachments."""
        return (self._known.hits, self._known.misses), (self._attached.hits, self._attached.misses)

    def forget(self, company_id: str) -> None:
        self._known.forget(company_id)

    async def detach(self, contact_id: str, company_id: str) -> None:
        """Detach; nothing to do when Intercom does not know the company or the attachment."""
        company = await self._intercom_id(company_id)
        if company is None:
            return
        response = await self._client.request(
            "DELETE",
            f"/contacts/{contact_id}/companies/{company}",
            endpoint="DELETE /contacts/{id}/companies/{company_id}",
        )
        if response.status == 404 and response.error[0] == "not_found":
            raise StaleContactError(response)
        if response.status != 404:  # the attachment (or the company) is gone already: nothing to detach
            raise_for(response, self._clock())
        self._attached.forget((contact_id, company))

    async def _intercom_id(self, company_id: str) -> str | None:
        known = self._known.get(company_id)
        if known is not None:
            return known.id
        response = await self._client.request(
            "GET", "/companies", endpoint="GET /companies", params={"company_id": company_id}
        )
        if response.status == 404:
            return None
        raise_for(response, self._clock())
        data = response.json()
        items = data.get("data") if isinstance(data, dict) and data.get("type") == "list" else [data]
        for item in items or []:
            if isinstance(item, dict) and item.get("company_id") == company_id and isinstance(item.get("id"), str):
                self._known.put(company_id, _Known(item["id"]))
                return str(item["id"])
        return None


_MISSING = object()


def _fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The values a write sets, custom attributes one by one; `update_last_request_at` is not a value."""
    fields = {name: value for name, value in body.items() if name not in (_TOUCH, "custom_attributes")}
    for name, value in (body.get("custom_attributes") or {}).items():
        fields[f"custom_attributes.{name}"] = value
    return fields


class StaleContactError(RetryableError):
    """Intercom answered "User Not Found" for a remembered contact id: the caller forgets it and retries."""

    def __init__(self, response: IntercomResponse) -> None:
        super().__init__(
            "the remembered contact no longer exists", status=404, code="not_found", endpoint=response.endpoint
        )
