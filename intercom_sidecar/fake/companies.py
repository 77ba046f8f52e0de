"""Company and data attribute endpoints, and attaching contacts to companies."""

from __future__ import annotations

from typing import Final

from intercom_sidecar.fake.api import ApiError, Call, Result, company_not_found, user_not_found
from intercom_sidecar.fake.attributes import CREATABLE_DATA_TYPES, MODEL_WORDS, invalid_name_message
from intercom_sidecar.fake.state import Company, Contact, State
from intercom_sidecar.fake.validation import check_custom_attributes, check_fields, json_object
from intercom_sidecar.fake.views import company_list_view, company_view, data_attribute_view

__all__ = ["CompanyRoutes"]

_COMPANY_FIELDS: Final = {
    "name": "str",
    "company_id": "str",
    "plan": "str",
    "size": "int",
    "website": "str",
    "industry": "str",
    "custom_attributes": "obj",
    "remote_created_at": "int",
    "update_last_request_at": "bool",
    "monthly_spend": "num",
}
_ATTRIBUTE_FIELDS: Final = {
    "name": "str",
    "model": "str",
    "data_type": "str",
    "description": "str",
    "options": "list",
    "messenger_writable": "bool",
}


class CompanyRoutes:
    """Company and data attribute handlers over one :class:`State`."""

    def __init__(self, state: State) -> None:
        self.state = state

    def _contact(self, contact_id: str) -> Contact:
        contact = self.state.active_contact(contact_id)
        if contact is None:
            raise user_not_found()
        return contact

    # companies --------------------------------------------------------------------------------------------

    def upsert_company(self, call: Call) -> Result:
        body = json_object(call.body)
        check_fields(body, _COMPANY_FIELDS, required=["company_id"])
        check_custom_attributes(self.state, "company", body.get("custom_attributes"))
        company = self.state.company_by_company_id(body["company_id"])
        if company is None:
            company = self.state.create_company(body["company_id"])
        for key in ("name", "plan", "size", "website", "industry", "remote_created_at"):
            if key in body:
                setattr(company, key, body[key])
        if "monthly_spend" in body:
            company.monthly_spend = int(body["monthly_spend"])
        company.custom_attributes.update(body.get("custom_attributes") or {})
        now = self.state.now()
        if body.get("update_last_request_at"):
            company.last_request_at = now
        company.updated_at = now
        return 200, company_view(self.state, company)

    def _company(self, company_id: str) -> Company:
        company = self.state.company(company_id)
        if company is None:
            raise company_not_found()
        return company

    def list_companies(self, call: Call) -> Result:
        per_page_text = call.query.get("per_page") or "15"
        if not per_page_text.isdigit() or not 1 <= int(per_page_text) <= 60:
            raise ApiError(400, "parameter_invalid", "per_page must be between 1 and 60")
        per_page = int(per_page_text)
        if "company_id" in call.query or "name" in call.query:
            found = [
                c
                for c in self.state.companies.values()
                if c.company_id == call.query.get("company_id", c.company_id)
                and c.name == call.query.get("name", c.name)
            ]
            if not found:
                raise company_not_found()
            return 200, company_list_view(self.state, found, per_page)
        return 200, company_list_view(self.state, list(self.state.companies.values()), per_page)

    def get_company(self, call: Call) -> Result:
        return 200, company_view(self.state, self._company(call.params[0]))

    def contact_companies(self, call: Call) -> Result:
        contact = self._contact(call.params[0])
        companies = [company_view(self.state, self.state.companies[c]) for c in contact.company_ids]
        pages = {
            "type": "pages",
            "next": None,
            "page": 1,
            "per_page": 50,
            "total_pages": 1 if companies else 0,
        }
        body = {"type": "list", "data": companies, "companies": companies, "total_count": len(companies)}
        return 200, {**body, "pages": pages}

    def attach_company(self, call: Call) -> Result:
        contact = self._contact(call.params[0])
        body = json_object(call.body)
        if not body.get("id"):
            raise ApiError(400, "parameter_not_found", "company not specified")
        check_fields(body, {"id": "str"})
        company = self._company(body["id"])
        if company.id not in contact.company_ids:
            contact.company_ids.append(company.id)
            self.state.update_contact(contact, {})
        return 200, company_view(self.state, company)

    def detach_company(self, call: Call) -> Result:
        contact = self._contact(call.params[0])
        company = self._company(call.params[1])
        if company.id not in contact.company_ids:
            raise company_not_found()
        contact.company_ids.remove(company.id)
        self.state.update_contact(contact, {})
        return 200, company_view(self.state, company)

    # data attributes --------------------------------------------------------------------------------------

    def list_attributes(self, call: Call) -> Result:
        model = call.query.get("model")
        if model == "conversation":
            raise ApiError(
                422,
                "parameter_invalid",
                "model=conversation is no longer supported. Use GET /conversations/attributes instead",
            )
        if model not in (None, "contact", "company"):
            raise ApiError(400, "parameter_invalid", "The Data Attribute model field must be either contact or company")
        archived = call.query.get("include_archived", "").lower() == "true"
        data = [
            data_attribute_view(a)
            for a in self.state.data_attributes
            if (model is None or a.model == model) and (archived or not a.archived)
        ]
        return 200, {"type": "list", "data": data}

    def create_attribute(self, call: Call) -> Result:
        body = json_object(call.body)
        check_fields(body, _ATTRIBUTE_FIELDS, required=["name", "model", "data_type"])
        name, model, data_type = body["name"], body["model"], body["data_type"]
        if model not in MODEL_WORDS:
            raise ApiError(400, "parameter_invalid", "The Data Attribute model field must be either contact or company")
        if data_type not in CREATABLE_DATA_TYPES:
            raise ApiError(400, "parameter_invalid", "Data Type isn't an option")
        problem = invalid_name_message(name)
        if problem is not None:
            raise ApiError(400, "parameter_invalid", problem)
        word = MODEL_WORDS[model]
        for attr in self.state.data_attributes:
            if attr.model == model and not attr.custom and attr.name.lower() == name.lower():
                raise ApiError(
                    400,
                    "parameter_invalid",
                    f"'{attr.label}' is one of our standard attributes for your {word} data. "
                    f"To save this as new {word} data, use a different name.",
                )
            if attr.custom and attr.name.lower() == name.lower():
                raise ApiError(
                    400,
                    "parameter_invalid",
                    f"You already have '{attr.name}' in your {MODEL_WORDS[attr.model]} data. "
                    f"To save this as new {word} data, use a different name.",
                )
        options = body.get("options") or []
        values = [o.get("value") if isinstance(o, dict) else None for o in options]
        if data_type == "options" and (len(values) < 2 or not all(isinstance(v, str) and v for v in values)):
            raise ApiError(400, "parameter_invalid", "You must have at least two options on a list type data attribute")
        attr = self.state.add_data_attribute(
            name,
            model,
            data_type,
            options=[str(v) for v in values] if data_type == "options" else None,
            description=body.get("description", ""),
            messenger_writable=bool(body.get("messenger_writable", False)),
        )
        return 200, data_attribute_view(attr)
