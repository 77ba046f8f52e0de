"""JSON shapes of the fake's objects, as Intercom API v2.16 answers them (see the OpenAPI description)."""

from __future__ import annotations

from typing import Any, Final

from intercom_sidecar.fake.state import Company, Contact, DataAttribute, State

__all__ = [
    "APP_ID",
    "admin_view",
    "company_list_view",
    "company_view",
    "contact_list_view",
    "contact_view",
    "data_attribute_view",
    "error_view",
]

APP_ID: Final = "fakeapp1"

_CONTACT_NULLS: Final = dict.fromkeys(
    (
        "last_replied_at last_contacted_at last_email_opened_at last_email_clicked_at language_override "
        "browser browser_version browser_language os android_app_name android_app_version android_device "
        "android_os_version android_sdk_version android_last_seen_at ios_app_name ios_app_version ios_device "
        "ios_os_version ios_sdk_version ios_last_seen_at utm_campaign utm_content utm_medium utm_source "
        "utm_term referrer enabled_push_messaging"
    ).split()
)


def _empty_list(url: str) -> dict[str, Any]:
    return {"type": "list", "data": [], "url": url, "total_count": 0, "has_more": False}


def error_view(request_id: str | None, code: str, message: str | None) -> dict[str, Any]:
    """Intercom's error envelope."""
    return {"type": "error.list", "request_id": request_id, "errors": [{"code": code, "message": message}]}


def contact_view(contact: Contact, *, include_merge_history: bool = False) -> dict[str, Any]:
    base = f"/contacts/{contact.id}"
    email = contact.email or ""
    view: dict[str, Any] = {
        "type": "contact",
        "id": contact.id,
        "workspace_id": APP_ID,
        "external_id": contact.external_id,
        "role": contact.role,
        "email": email,
        "email_domain": email.rpartition("@")[2] if "@" in email else "",
        "phone": contact.phone,
        "name": contact.name,
        "avatar": {"type": "avatar", "image_url": contact.avatar} if contact.avatar else None,
        "owner_id": contact.owner_id,
        "social_profiles": {"type": "list", "data": []},
        "has_hard_bounced": False,
        "marked_email_as_spam": False,
        "unsubscribed_from_emails": contact.unsubscribed_from_emails,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "signed_up_at": contact.signed_up_at,
        "last_seen_at": contact.last_seen_at,
        **_CONTACT_NULLS,
        "location": {"type": "location", "country": None, "region": None, "city": None},
        "custom_attributes": dict(contact.custom_attributes),
        "tags": _empty_list(f"{base}/tags"),
        "notes": _empty_list(f"{base}/notes"),
        "companies": {
            "type": "list",
            "data": [{"id": cid, "type": "company", "url": f"/companies/{cid}"} for cid in contact.company_ids],
            "url": f"{base}/companies",
            "total_count": len(contact.company_ids),
            "has_more": False,
        },
        "opted_out_subscription_types": _empty_list(f"{base}/subscriptions"),
        "opted_in_subscription_types": _empty_list(f"{base}/subscriptions"),
    }
    if include_merge_history and contact.role == "user":
        view["merge_history"] = [dict(item) for item in contact.merge_history]
    return view


def _pages(per_page: int, total: int, next_cursor: str | None) -> dict[str, Any]:
    pages: dict[str, Any] = {
        "type": "pages",
        "page": 1,
        "per_page": per_page,
        "total_pages": max(1, -(-total // per_page)) if total else 0,
    }
    if next_cursor is not None:
        pages["next"] = {"per_page": per_page, "starting_after": next_cursor}
    return pages


def contact_list_view(
    contacts: list[Contact],
    total: int,
    per_page: int,
    next_cursor: str | None,
    *,
    include_merge_history: bool,
) -> dict[str, Any]:
    return {
        "type": "list",
        "data": [contact_view(c, include_merge_history=include_merge_history) for c in contacts],
        "total_count": total,
        "pages": _pages(per_page, total, next_cursor),
    }


def company_view(state: State, company: Company) -> dict[str, Any]:
    plan: dict[str, Any] = {}
    if company.plan is not None:
        plan = {"type": "plan", "id": company.plan, "name": company.plan}
    view: dict[str, Any] = {
        "type": "company",
        "company_id": company.company_id,
        "id": company.id,
        "app_id": APP_ID,
        "name": company.name or "",
        "remote_created_at": company.remote_created_at or company.created_at,
        "created_at": company.created_at,
        "updated_at": company.updated_at,
        "monthly_spend": company.monthly_spend or 0,
        "session_count": 0,
        "user_count": state.user_count(company),
        "tags": {"type": "tag.list", "tags": []},
        "segments": {"type": "segment.list", "segments": []},
        "plan": plan,
        "custom_attributes": dict(company.custom_attributes),
    }
    if company.last_request_at is not None:
        view["last_request_at"] = company.last_request_at
    for key in ("size", "industry", "website"):
        value = getattr(company, key)
        if value is not None:
            view[key] = value
    return view


def company_list_view(state: State, companies: list[Company], per_page: int) -> dict[str, Any]:
    return {
        "type": "list",
        "data": [company_view(state, c) for c in companies[:per_page]],
        "pages": {
            "type": "pages",
            "next": None,
            "page": 1,
            "per_page": per_page,
            "total_pages": 1 if companies else 0,
        },
        "total_count": len(companies),
    }


def data_attribute_view(attr: DataAttribute) -> dict[str, Any]:
    # The API names list attributes "string" (with options) and datetime ones "date".
    data_type = {"options": "string", "datetime": "date"}.get(attr.data_type, attr.data_type)
    view: dict[str, Any] = {"type": "data_attribute"}
    if attr.id is not None:
        view["id"] = attr.id
    view.update(
        {
            "name": attr.name,
            "full_name": attr.full_name,
            "label": attr.label,
            "description": attr.description,
            "data_type": data_type,
            "api_writable": attr.api_writable,
            "ui_writable": False,
            "messenger_writable": attr.messenger_writable,
            "custom": attr.custom,
            "archived": attr.archived,
            "model": attr.model,
        }
    )
    if attr.options:
        view["options"] = list(attr.options)
    if attr.custom:
        view["admin_id"] = "1"
        view["created_at"] = attr.created_at
        view["updated_at"] = attr.updated_at
    return view


def admin_view(created_at: int) -> dict[str, Any]:
    return {
        "type": "admin",
        "id": "1",
        "email": "admin@fake-intercom.invalid",
        "name": "Fake Admin",
        "email_verified": True,
        "app": {
            "type": "app",
            "id_code": APP_ID,
            "name": "Fake Intercom",
            "created_at": created_at,
            "secure": False,
            "identity_verification": False,
            "timezone": "Etc/UTC",
            "region": "US",
        },
        "avatar": {"type": "avatar", "image_url": None},
        "has_inbox_seat": True,
    }
