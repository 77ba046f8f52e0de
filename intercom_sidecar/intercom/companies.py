"""Companies: upsert them, and attach or detach contacts, skipping what is known to be done already.

Remembers company_id -> Intercom id, the last body written for each company, and which contact/company
attachments exist, so a repeated group or identify costs no calls. A company unknown here is looked up by
company_id (`GET /companies?company_id=`) only when a detach needs its Intercom id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from intercom_sidecar.intercom.attributes import DataAttributes
from intercom_sidecar.intercom.cache import LruCache
from intercom_sidecar.intercom.client import IntercomClient, id_of, raise_for
from intercom_sidecar.mapping.plan import UpsertCompany

__all__ = ["Companies"]


class Companies:
    def __init__(
        self, client: IntercomClient, attributes: DataAttributes, *, clock: Callable[[], float], cache_size: int
    ) -> None:
        self._client = client
        self._attributes = attributes
        self._clock = clock
        self._ids: LruCache[str, str] = LruCache(cache_size)
        self._written: LruCache[str, bytes] = LruCache(cache_size)
        self._attached: LruCache[tuple[str, str], bool] = LruCache(cache_size)
        self.unchanged_skipped = 0

    async def upsert(self, step: UpsertCompany) -> str:
        body = await self._attributes.writable_body("company", step.body, step.attribute_types)
        digest = hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=16).digest()
        known = self._ids.get(step.company_id)
        if known is not None and self._written.get(step.company_id) == digest:
            self.unchanged_skipped += 1
            return known
        response = await self._client.request("POST", "/companies", endpoint="POST /companies", body=body)
        raise_for(response, self._clock())
        company = id_of(response)
        self._ids.put(step.company_id, company)
        self._written.put(step.company_id, digest)
        return company

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
        raise_for(response, self._clock())
        self._attached.put((contact_id, company), True)

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
        if response.status != 404:
            raise_for(response, self._clock())
        self._attached.forget((contact_id, company))

    async def _intercom_id(self, company_id: str) -> str | None:
        known = self._ids.get(company_id)
        if known is not None:
            return known
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
                self._ids.put(company_id, item["id"])
                return str(item["id"])
        return None
