"""PiiPolicy: which trait/property keys may appear in logs and span attributes."""

from __future__ import annotations

import pytest

from intercom_sidecar.errors import ConfigError
from intercom_sidecar.telemetry.pii import PiiPolicy

TRAITS = {"email": "ada@example.com", "plan": "pro", "Plan": "x", "company": {"id": "c1", "name": "Acme"}}


def test_by_default_no_key_is_allowed() -> None:
    assert PiiPolicy.from_env({}) == PiiPolicy() == PiiPolicy(frozenset())
    assert PiiPolicy.from_env({"INTERCOM_SIDECAR_LOG_ALLOWED_KEYS": " , "}).allowed_keys == frozenset()
    assert PiiPolicy().allowed_items(TRAITS) == {}


def test_keys_are_comma_separated_and_trimmed() -> None:
    policy = PiiPolicy.from_env({"INTERCOM_SIDECAR_LOG_ALLOWED_KEYS": " plan, company ,,First Name"})
    assert policy.allowed_keys == frozenset({"plan", "company", "First Name"})


def test_allowed_items_keeps_only_allowed_keys_exactly_in_order_with_values_whole() -> None:
    policy = PiiPolicy(frozenset({"company", "plan", "absent"}))
    kept = policy.allowed_items(TRAITS)
    assert kept == {"plan": "pro", "company": {"id": "c1", "name": "Acme"}}
    assert list(kept) == ["plan", "company"]
    assert policy.allowed_items({}) == {}


def test_a_wildcard_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ConfigError) as raised:
        PiiPolicy.from_env({"INTERCOM_SIDECAR_LOG_ALLOWED_KEYS": "plan,*"})
    assert str(raised.value) == (
        "INTERCOM_SIDECAR_LOG_ALLOWED_KEYS: lists exact key names, wildcards are not supported, got '*'"
    )
