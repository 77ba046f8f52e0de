"""Segment company objects -> UpsertCompany: a table of (id, traits, expected body and attribute types).

The same mapping serves a group's traits and an identify's `traits.company` / `traits.companies`; the
identify and group tables show it in their plans, this one covers the fields one by one.
"""

from __future__ import annotations

from typing import Any

import pytest

from intercom_sidecar.mapping import UpsertCompany
from intercom_sidecar.mapping.company import CompanyChange, company_changes, company_id_for_name, company_upsert

JAN_2020 = 1_577_836_800
FEB_2001 = 981_158_400  # 2001-02-03T00:00:00Z
ACME_INC = "name-42cf7a26a3123b9e6ad1b2b2"  # pinned: ids already in Intercom depend on it


def body(**fields: Any) -> dict[str, Any]:
    return {"company_id": "acme", **fields, "update_last_request_at": True}


UPSERTS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]] = [
    ("no traits", {}, body(), {}),
    ("name stripped", {"name": "  Acme  "}, body(name="Acme"), {}),
    ("blank name dropped", {"name": "  "}, body(), {}),
    ("name not a string dropped", {"name": 7}, body(), {}),
    ("name cut to 255", {"name": "n" * 300}, body(name="n" * 255), {}),
    (
        "plan, industry, website",
        {"plan": " pro ", "industry": "Software", "website": "https://acme.example"},
        body(plan="pro", industry="Software", website="https://acme.example"),
        {},
    ),
    ("employees -> size", {"employees": 50}, body(size=50), {}),
    ("employees as a numeric string", {"employees": " 50 "}, body(size=50), {}),
    ("employees fractional: whole part", {"employees": 50.7}, body(size=50), {}),
    ("employees not a number", {"employees": "about fifty"}, body(), {}),
    ("employees infinite string", {"employees": "1e999"}, body(), {}),
    ("employees NaN string", {"employees": "nan"}, body(), {}),
    ("employees negative", {"employees": -3}, body(), {}),
    ("employees bool", {"employees": True}, body(), {}),
    ("size when there is no employees", {"size": 12}, body(size=12), {}),
    ("employees wins over size", {"employees": 50, "size": 12}, body(size=50), {}),
    ("monthly_spend: whole units", {"monthly_spend": 19.99}, body(monthly_spend=19), {}),
    ("monthly_spend zero kept", {"monthly_spend": 0}, body(monthly_spend=0), {}),
    ("createdAt ISO -> remote_created_at", {"createdAt": "2020-01-01T00:00:00Z"}, body(remote_created_at=JAN_2020), {}),
    ("createdAt Unix ms", {"createdAt": JAN_2020 * 1000}, body(remote_created_at=JAN_2020), {}),
    ("created_at snake case", {"created_at": JAN_2020}, body(remote_created_at=JAN_2020), {}),
    ("createdAt not a date", {"createdAt": "soon"}, body(), {}),
    (
        "other traits -> custom attributes with data types",
        {"tier": "gold", "seats": 5, "arr": 1200.5, "vip": True, "founded": "2001-02-03"},
        body(custom_attributes={"tier": "gold", "seats": 5, "arr": 1200.5, "vip": True, "founded": FEB_2001}),
        {"tier": "string", "seats": "integer", "arr": "float", "vip": "boolean", "founded": "date"},
    ),
    (
        "nested traits flattened, arrays and nulls dropped",
        {"address": {"city": "Paris", "lines": ["a"], "zip": None}, "tags": ["b2b"], "owner": None},
        body(custom_attributes={"address_city": "Paris"}),
        {"address_city": "string"},
    ),
    (
        "custom attribute names cleaned, values cut to 255",
        {"utm.source": "x" * 300, "$score": 1},
        body(custom_attributes={"utm_source": "x" * 255, "_score": 1}),
        {"utm_source": "string", "_score": "integer"},
    ),
    (
        "ids and mapped fields are never custom attributes",
        {"id": "acme", "company_id": "acme", "remove": False, "createdAt": "soon", "employees": "many", "plan": 3},
        body(),
        {},
    ),
    (
        "Segment's group example",
        {"name": "Initech", "industry": "Technology", "employees": 329, "plan": "enterprise", "total billed": 830},
        body(
            name="Initech",
            industry="Technology",
            size=329,
            plan="enterprise",
            custom_attributes={"total billed": 830},
        ),
        {"total billed": "integer"},
    ),
]


@pytest.mark.parametrize(
    ("traits", "expected_body", "types"), [case[1:] for case in UPSERTS], ids=[case[0] for case in UPSERTS]
)
def test_company_upsert(traits: dict[str, Any], expected_body: dict[str, Any], types: dict[str, str]) -> None:
    assert company_upsert("acme", traits) == UpsertCompany(company_id="acme", body=expected_body, attribute_types=types)


def test_inactive_company_upsert_does_not_touch_last_request() -> None:
    step = company_upsert("acme", {"name": "Acme"}, active=False)
    assert step.body == {"company_id": "acme", "name": "Acme"}


def upsert(company_id: str, active: bool = True, **fields: Any) -> UpsertCompany:
    touch = {"update_last_request_at": True} if active else {}
    return UpsertCompany(company_id=company_id, body={"company_id": company_id, **fields, **touch}, attribute_types={})


CHANGES: list[tuple[str, dict[str, Any], list[CompanyChange]]] = [
    ("none", {"name": "Ada"}, []),
    ("object", {"company": {"id": "acme"}}, [CompanyChange("acme", upsert("acme"), remove=False)]),
    ("id stripped", {"company": {"id": " acme "}}, [CompanyChange("acme", upsert("acme"), remove=False)]),
    ("integer id", {"company": {"id": 42}}, [CompanyChange("42", upsert("42"), remove=False)]),
    (
        "bool id ignored, name used",
        {"company": {"id": True, "name": "Acme Inc"}},
        [CompanyChange(ACME_INC, upsert(ACME_INC, name="Acme Inc"), remove=False)],
    ),
    ("string", {"company": "Acme Inc"}, [CompanyChange(ACME_INC, upsert(ACME_INC, name="Acme Inc"), remove=False)]),
    ("remove", {"company": {"id": "acme", "remove": True}}, [CompanyChange("acme", None, remove=True)]),
    (
        "company, then the list in order",
        {"company": "Acme Inc", "companies": [{"id": "b", "remove": True}, {"company_id": "c"}, 3, "", {}]},
        [
            CompanyChange(ACME_INC, upsert(ACME_INC, name="Acme Inc"), remove=False),
            CompanyChange("b", None, remove=True),
            CompanyChange("c", upsert("c"), remove=False),
        ],
    ),
]


@pytest.mark.parametrize(("traits", "expected"), [case[1:] for case in CHANGES], ids=[case[0] for case in CHANGES])
def test_company_changes(traits: dict[str, Any], expected: list[CompanyChange]) -> None:
    assert list(company_changes(traits)) == expected


def test_company_changes_of_an_inactive_identify() -> None:
    assert list(company_changes({"company": "Acme Inc"}, active=False)) == [
        CompanyChange(ACME_INC, upsert(ACME_INC, active=False, name="Acme Inc"), remove=False)
    ]


@pytest.mark.parametrize("name", ["Acme Inc", " Acme Inc", "Acme Inc \n"])
def test_company_id_for_name_is_stable_and_ignores_surrounding_space(name: str) -> None:
    assert company_id_for_name(name) == ACME_INC


def test_company_id_for_name_tells_names_apart() -> None:
    assert company_id_for_name("acme inc") != ACME_INC
    assert company_id_for_name("Initech") == "name-834d492e8e85a879eaa796e1"
