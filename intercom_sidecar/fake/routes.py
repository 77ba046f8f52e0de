"""Finds the handler for an API request: ``Routes.find(method, path)``."""

from __future__ import annotations

from collections.abc import Callable

from intercom_sidecar.fake.api import Call, Result
from intercom_sidecar.fake.companies import CompanyRoutes
from intercom_sidecar.fake.contacts import ContactRoutes
from intercom_sidecar.fake.state import State

__all__ = ["Handler", "Routes"]

Handler = Callable[[Call], Result]


class Routes:
    """The endpoints of Intercom API v2.16 the fake serves."""

    def __init__(self, state: State, created_at: int) -> None:
        self.contacts = ContactRoutes(state, created_at)
        self.companies = CompanyRoutes(state)

    def find(self, method: str, path: str) -> tuple[Handler, list[str]] | None:
        """The handler for ``method path`` and its path parameters, or ``None``."""
        contacts, companies = self.contacts, self.companies
        parts = path.strip("/").split("/")
        match (method, parts):
            case ("GET", ["me"]):
                return contacts.me, []
            case ("POST", ["contacts"]):
                return contacts.create_contact, []
            case ("GET", ["contacts"]):
                return contacts.list_contacts, []
            case ("POST", ["contacts", "search"]):
                return contacts.search, []
            case ("POST", ["contacts", "merge"]):
                return contacts.merge, []
            case ("GET", ["contacts", contact_id]):
                return contacts.get_contact, [contact_id]
            case ("PUT", ["contacts", contact_id]):
                return contacts.update_contact, [contact_id]
            case ("GET", ["contacts", contact_id, "companies"]):
                return companies.contact_companies, [contact_id]
            case ("POST", ["contacts", contact_id, "companies"]):
                return companies.attach_company, [contact_id]
            case ("DELETE", ["contacts", contact_id, "companies", company_id]):
                return companies.detach_company, [contact_id, company_id]
            case ("POST", ["events"]):
                return contacts.create_event, []
            case ("POST", ["companies"]):
                return companies.upsert_company, []
            case ("GET", ["companies"]):
                return companies.list_companies, []
            case ("GET", ["companies", company_id]):
                return companies.get_company, [company_id]
            case ("GET", ["data_attributes"]):
                return companies.list_attributes, []
            case ("POST", ["data_attributes"]):
                return companies.create_attribute, []
        return None
