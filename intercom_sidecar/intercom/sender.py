"""`IntercomSender`: carries out a `Plan` step by step (the delivery pipeline's `Sender`).

Ids are resolved by `Contacts` and `Companies`, which remember them; this module only orders the calls.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from intercom_sidecar.config import IntercomConfig
from intercom_sidecar.errors import RetryableError
from intercom_sidecar.intercom.attributes import DataAttributes
from intercom_sidecar.intercom.client import IntercomClient, raise_for
from intercom_sidecar.intercom.companies import Companies, StaleContactError
from intercom_sidecar.intercom.contacts import Contacts
from intercom_sidecar.mapping.plan import (
    AttachCompany,
    ContactRef,
    CreateDataEvent,
    DetachCompany,
    MergeLead,
    Plan,
    Step,
    UpsertCompany,
    UpsertContact,
)

__all__ = ["IntercomSender", "SenderStats"]


@dataclass(frozen=True, slots=True)
class SenderStats:
    unchanged_contacts_skipped: int
    unchanged_companies_skipped: int
    attributes_dropped: int
    contacts_created_for_events: int
    leads_not_found: int


class IntercomSender:
    def __init__(
        self,
        client: IntercomClient,
        config: IntercomConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._clock = clock
        self._attributes = DataAttributes(
            client, lambda response: raise_for(response, clock()), create=config.create_attributes
        )
        self._contacts = Contacts(
            client,
            self._attributes,
            clock=clock,
            cache_size=config.cache_max_entries,
            last_seen_resolution_seconds=config.last_seen_resolution_seconds,
        )
        self._companies = Companies(
            client,
            self._attributes,
            clock=clock,
            cache_size=config.cache_max_entries,
            last_request_resolution_seconds=config.last_seen_resolution_seconds,
        )
        self._contacts_created_for_events = 0
        self._leads_not_found = 0

    @property
    def stats(self) -> SenderStats:
        return SenderStats(
            unchanged_contacts_skipped=self._contacts.unchanged_skipped,
            unchanged_companies_skipped=self._companies.unchanged_skipped,
            attributes_dropped=self._attributes.dropped,
            contacts_created_for_events=self._contacts_created_for_events,
            leads_not_found=self._leads_not_found,
        )

    def cache_lookups(self) -> dict[str, tuple[int, int]]:
        """Per cache (contacts, companies, attachments): (hits, misses) so far."""
        companies, attachments = self._companies.cache_lookups
        return {"contacts": self._contacts.cache_lookups, "companies": companies, "attachments": attachments}

    async def prefetch(self) -> None:
        """Learn which custom data attributes exist (at start; otherwise the first write that needs them asks)."""
        for model in ("contact", "company"):
            await self._attributes.prefetch(model)

    async def send(self, plan: Plan) -> None:
        for step in plan.steps:
            await self._run(step)

    async def _run(self, step: Step) -> None:
        if isinstance(step, UpsertContact):
            await self._contacts.upsert(step)
        elif isinstance(step, CreateDataEvent):
            await self._data_event(step)
        elif isinstance(step, UpsertCompany):
            await self._companies.upsert(step)
        elif isinstance(step, AttachCompany):
            await self._for_contact(
                step.contact, lambda contact_id: self._companies.attach(contact_id, step.company_id)
            )
        elif isinstance(step, DetachCompany):
            await self._for_contact(
                step.contact, lambda contact_id: self._companies.detach(contact_id, step.company_id)
            )
        else:
            await self._merge(step)

    async def _for_contact(self, contact: ContactRef, action: Callable[[str], Awaitable[None]]) -> None:
        """Run `action` with the contact's Intercom id; if that id is stale (merged or deleted in Intercom),
        forget it, resolve the contact again and run `action` once more, as an upsert does."""
        try:
            await action(await self._contacts.resolve(contact))
        except StaleContactError:
            self._contacts.forget(contact)
            await action(await self._contacts.resolve(contact))

    async def _data_event(self, step: CreateDataEvent) -> None:
        response = await self._client.request("POST", "/events", endpoint="POST /events", body=step.body)
        if response.status == 404 and step.create_missing_contact:
            # The user is not in Intercom yet (a track that overtook its identify, or a user never identified):
            # create them and send the event again, rather than losing it. A remembered id is stale by now.
            self._contacts.forget(step.contact)
            await self._contacts.resolve(step.contact)
            self._contacts_created_for_events += 1
            response = await self._client.request("POST", "/events", endpoint="POST /events", body=step.body)
        raise_for(response, self._clock())

    async def _merge(self, step: MergeLead) -> None:
        lead = await self._contacts.find(step.lead)
        if lead is None:
            # The lead's identify may not have reached Intercom yet (another user key, so another queue), or
            # Intercom's search may lag: try again later rather than acknowledge a merge that did not happen.
            self._leads_not_found += 1
            raise RetryableError("the lead to merge is not in Intercom (yet)", code="lead_not_found")
        user = await self._contacts.resolve(step.user)
        # An alias is the caller's statement that both are one person, so Intercom's duplicate check (shared
        # email or phone) is not wanted here.
        body = {"from": lead, "into": user, "skip_duplicate_validation": True}
        response = await self._client.request("POST", "/contacts/merge", endpoint="POST /contacts/merge", body=body)
        raise_for(response, self._clock())
        self._contacts.forget(step.lead)
