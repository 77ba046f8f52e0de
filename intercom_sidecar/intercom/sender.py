"""`IntercomSender`: carries out a `Plan` with the Intercom client (the delivery pipeline's `Sender`).

Contacts are resolved without search-then-write (search lags by minutes in Intercom): create first; on a 409
take the id from Intercom's message and update; remember identity -> contact id so the next write is a single
`PUT`; a cached id answering 404 is forgotten and resolved again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from intercom_sidecar.delivery.classify import error_for_status
from intercom_sidecar.intercom.attributes import DataAttributes
from intercom_sidecar.intercom.cache import LruCache
from intercom_sidecar.intercom.client import IntercomClient, IntercomResponse
from intercom_sidecar.mapping.plan import CreateDataEvent, Plan, UpsertContact

__all__ = ["IntercomSender"]

_CONFLICT_ID = re.compile(r"id=([0-9A-Za-z_-]+)")


class IntercomSender:
    def __init__(
        self, client: IntercomClient, *, contact_cache_size: int = 100_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._clock = clock
        self._contact_ids: LruCache[str, str] = LruCache(contact_cache_size)
        self._attributes = DataAttributes(client, self._raise_for)

    async def send(self, plan: Plan) -> None:
        for step in plan.steps:
            if isinstance(step, UpsertContact):
                await self._upsert_contact(step)
            else:
                await self._create_data_event(step)

    async def _upsert_contact(self, step: UpsertContact) -> None:
        body = await self._with_writable_attributes("contact", step.body, step.attribute_types)
        key = step.contact.key
        cached = self._contact_ids.get(key)
        if cached is not None:
            response = await self._update_contact(cached, body)
            if response.status != 404:
                self._raise_for(response)
                return
            self._contact_ids.forget(key)
        response = await self._client.request("POST", "/contacts", endpoint="POST /contacts", body=body)
        if response.status == 409:
            existing = _conflict_id(response)
            if existing is not None:
                response = await self._update_contact(existing, body)
        self._raise_for(response)
        contact = response.json()
        if isinstance(contact, dict) and isinstance(contact.get("id"), str):
            self._contact_ids.put(key, contact["id"])

    async def _with_writable_attributes(
        self, model: str, body: Mapping[str, Any], types: Mapping[str, str]
    ) -> Mapping[str, Any]:
        """`body` with its custom attributes created if need be, spelled as Intercom has them, and those
        named like standard attributes left out."""
        names = await self._attributes.names_for(model, types)
        custom = body.get("custom_attributes")
        if not custom or all(names.get(name) == name for name in custom):
            return body
        renamed = {names[name]: value for name, value in custom.items() if name in names}
        rest = {key: value for key, value in body.items() if key != "custom_attributes"}
        return {**rest, "custom_attributes": renamed} if renamed else rest

    async def _update_contact(self, contact_id: str, body: Mapping[str, Any]) -> IntercomResponse:
        return await self._client.request("PUT", f"/contacts/{contact_id}", endpoint="PUT /contacts/{id}", body=body)

    async def _create_data_event(self, step: CreateDataEvent) -> None:
        response = await self._client.request("POST", "/events", endpoint="POST /events", body=step.body)
        self._raise_for(response)

    def _raise_for(self, response: IntercomResponse) -> None:
        code, message = response.error
        error = error_for_status(
            response.status,
            code=code,
            message=message,
            headers=response.headers,
            endpoint=response.endpoint,
            now=self._clock(),
        )
        if error is not None:
            raise error


def _conflict_id(response: IntercomResponse) -> str | None:
    """The existing contact's id from "A contact matching those details already exists with id=<id>"."""
    match = _CONFLICT_ID.search(response.error[1])
    return match.group(1) if match else None
