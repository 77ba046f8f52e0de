"""Segment's selective-destinations rule for the `integrations` object, applied to Intercom."""

from __future__ import annotations

from intercom_sidecar.model.events import JsonObject

__all__ = ["filter_reason"]


def filter_reason(integrations: JsonObject) -> str | None:
    """Why an event must not go to Intercom, or None to deliver it.

    Deliver when `Intercom` is true or an object, or when it is absent and `All` is not false.
    """
    setting = integrations.get("Intercom")
    if setting is None:
        if integrations.get("All", True) is False:
            return "integrations.All is false and integrations.Intercom is not enabled"
        return None
    if setting is True or isinstance(setting, dict):
        return None
    return f"integrations.Intercom is {_describe(setting)}"


def _describe(value: object) -> str:
    if value is False:
        return "false"
    return f"{value!r}, not true or an object"
