"""Contacts: resolve and write them with as few calls as possible.

No search-then-write (Intercom's search lags by minutes): create first; a 409 names the existing contact's id,
which is then updated. Ids are remembered per identity, so the next write is one `PUT`; a remembered id that
answers 404 (merged or deleted) is forgotten and resolved again. An update identical to the last one sent
successfully is not sent at all (last seen counts as changed only once it moved by the configured resolution).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from intercom_sidecar.intercom.attributes import DataAttributes
from intercom_sidecar.intercom.cache import LruCache
from intercom_sidecar.intercom.client import IntercomClient, IntercomResponse, id_of, raise_for
from intercom_sidecar.mapping.plan import ContactRef, UpsertContact

__all__ = ["Contacts"]

_CONFLICT_ID = re.compile(r"id=([0-9A-Za-z_-]+)")


@dataclass(slots=True)
class _Known:
    id: str
    digest: bytes | None = None
    """Of the last body written successfully, without last_seen_at; None when only the id is known."""
    last_seen_at: int | None = None


class Contacts:
    def __init__(
        self,
        client: IntercomClient,
        attributes: DataAttributes,
        *,
        clock: Callable[[], float],
        cache_size: int,
        last_seen_resolution_seconds: float,
    ) -> None:
        self._client = client
        self._attributes = attributes
        self._clock = clock
        self._known: LruCache[str, _Known] = LruCache(cache_size)
        self._resolution = last_seen_resolution_seconds
        self.unchanged_skipped = 0
        """Upserts not sent because they repeated the last one."""

    async def upsert(self, step: UpsertContact) -> str:
        """Create or update the contact; its Intercom id."""
        body = await self._attributes.writable_body("contact", step.body, step.attribute_types)
        digest, last_seen_at = _fingerprint(body)
        key = step.contact.key
        known = self._known.get(key)
        if known is not None and known.digest == digest and not self._moves_last_seen(known, last_seen_at):
            self.unchanged_skipped += 1
            return known.id
        contact_id = await self._write(key, known, body)
        seen = max(filter(None, (last_seen_at, known.last_seen_at if known else None)), default=None)
        self._known.put(key, _Known(contact_id, digest, seen))
        return contact_id

    async def resolve(self, contact: ContactRef) -> str:
        """The contact's Intercom id, creating the contact if Intercom does not have it."""
        known = self._known.get(contact.key)
        if known is not None:
            return known.id
        contact_id = await self._create(contact.identity, update_existing=False)
        self._known.put(contact.key, _Known(contact_id))
        return contact_id

    async def find(self, contact: ContactRef) -> str | None:
        """The id of an existing contact, without creating one (a remembered id, else a search by external_id).

        Search lags behind writes in Intercom, so a contact created moments ago elsewhere may not be found.
        """
        known = self._known.get(contact.key)
        if known is not None:
            return known.id
        query = {"query": {"field": "external_id", "operator": "=", "value": contact.external_id}}
        response = await self._client.request("POST", "/contacts/search", endpoint="POST /contacts/search", body=query)
        raise_for(response, self._clock())
        for item in (response.json() or {}).get("data", []):
            if isinstance(item, dict) and item.get("role") == contact.role and isinstance(item.get("id"), str):
                return str(item["id"])
        return None

    @property
    def cache_lookups(self) -> tuple[int, int]:
        return self._known.hits, self._known.misses

    def forget(self, contact: ContactRef) -> None:
        self._known.forget(contact.key)

    def _moves_last_seen(self, known: _Known, last_seen_at: int | None) -> bool:
        if last_seen_at is None:
            return False
        if known.last_seen_at is None:
            return True
        # Strictly later: with a resolution of 0 an identical last_seen_at is still no change.
        return last_seen_at > known.last_seen_at and last_seen_at >= known.last_seen_at + self._resolution

    async def _write(self, key: str, known: _Known | None, body: Mapping[str, Any]) -> str:
        if known is not None:
            response = await self._update(known.id, body)
            if response.status != 404:
                raise_for(response, self._clock())
                return known.id
            self._known.forget(key)
        return await self._create(body, update_existing=True)

    async def _create(self, body: Mapping[str, Any], *, update_existing: bool) -> str:
        """Create the contact; on a 409, the existing contact's id (updated with `body` if `update_existing`)."""
        response = await self._client.request("POST", "/contacts", endpoint="POST /contacts", body=body)
        if response.status == 409:
            existing = _conflict_id(response)
            if existing is not None:
                if update_existing:
                    raise_for(await self._update(existing, body), self._clock())
                return existing
        raise_for(response, self._clock())
        return id_of(response)

    async def _update(self, contact_id: str, body: Mapping[str, Any]) -> IntercomResponse:
        return await self._client.request("PUT", f"/contacts/{contact_id}", endpoint="PUT /contacts/{id}", body=body)


def _fingerprint(body: Mapping[str, Any]) -> tuple[bytes, int | None]:
    last_seen_at = body.get("last_seen_at")
    rest = {key: value for key, value in body.items() if key != "last_seen_at"}
    digest = hashlib.blake2b(json.dumps(rest, sort_keys=True).encode(), digest_size=16).digest()
    return digest, last_seen_at if isinstance(last_seen_at, int) else None


def _conflict_id(response: IntercomResponse) -> str | None:
    """The existing contact's id from "A contact matching those details already exists with id=<id>"."""
    match = _CONFLICT_ID.search(response.error[1])
    return match.group(1) if match else None
