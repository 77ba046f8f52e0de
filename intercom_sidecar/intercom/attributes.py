"""Custom data attributes: Intercom 2.x rejects writes to attributes that do not exist, so create them first.

The attributes Intercom knows are listed once per model (`GET /data_attributes`); a missing custom attribute is
created once (`POST /data_attributes` with the mapped `data_type`) and remembered; with creation turned off, values of
attributes Intercom does not have are left out and counted in `dropped`. Names are matched without
regard to case, as Intercom does, and written with the spelling Intercom has. A trait whose name is one of
Intercom's standard attributes (`role`, `owner_id`, ...) cannot be a custom attribute: it is left out and
counted in `dropped`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from intercom_sidecar.intercom.client import IntercomClient, IntercomResponse

__all__ = ["DataAttributes"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Known:
    custom: dict[str, str] = field(default_factory=dict)
    """Lower-cased name -> the custom attribute's name as Intercom spells it."""
    standard: set[str] = field(default_factory=set)
    """Lower-cased names of Intercom's built-in attributes."""


class DataAttributes:
    def __init__(
        self, client: IntercomClient, raise_for: Callable[[IntercomResponse], None], *, create: bool = True
    ) -> None:
        self._client = client
        self._raise_for = raise_for
        self._create_missing = create
        self._known: dict[str, _Known] = {}
        self._lock = asyncio.Lock()
        self.dropped = 0
        """Attribute values left out: named like a standard attribute, or missing while creation is off."""

    async def writable_body(self, model: str, body: Mapping[str, Any], types: Mapping[str, str]) -> Mapping[str, Any]:
        """`body` with its custom attributes created if need be, spelled as Intercom has them, and those named
        like standard attributes left out."""
        custom = body.get("custom_attributes")
        if not custom:
            return body
        names = await self.names_for(model, types)
        if all(names.get(name) == name for name in custom):
            return body
        renamed = {names[name]: value for name, value in custom.items() if name in names}
        rest = {key: value for key, value in body.items() if key != "custom_attributes"}
        return {**rest, "custom_attributes": renamed} if renamed else rest

    async def names_for(self, model: str, types: Mapping[str, str]) -> dict[str, str]:
        """For each wanted custom attribute (name -> data_type) on `model`, the name to write it under.

        Creates the ones Intercom does not have yet. Names of standard attributes are not in the result.
        """
        if not types:
            return {}
        known = self._known.get(model)
        if known is None or any(name.lower() not in known.custom for name in types):
            async with self._lock:
                known = await self._ensure(model, types)
        names = {name: known.custom[name.lower()] for name in types if name.lower() in known.custom}
        if len(names) < len(types):
            self.dropped += len(types) - len(names)
            _log.debug("Left out attributes Intercom cannot take: %s.", sorted(set(types) - set(names)))
        return names

    async def prefetch(self, model: str) -> None:
        """List the attributes Intercom has for `model` now, rather than on the first write that needs them."""
        async with self._lock:
            if model not in self._known:
                self._known[model] = await self._list(model)

    async def _ensure(self, model: str, types: Mapping[str, str]) -> _Known:
        known = self._known.get(model)
        if known is None:
            known = self._known[model] = await self._list(model)
        for name, data_type in types.items():
            key = name.lower()
            if key not in known.custom and key not in known.standard and self._create_missing:
                await self._create(model, name, data_type, known)
        return known

    async def _list(self, model: str) -> _Known:
        response = await self._client.request(
            "GET", "/data_attributes", endpoint="GET /data_attributes", params={"model": model}
        )
        self._raise_for(response)
        known = _Known()
        for item in (response.json() or {}).get("data", []):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            if item.get("custom"):
                known.custom[item["name"].lower()] = item["name"]
            else:
                known.standard.add(item["name"].lower())
        return known

    async def _create(self, model: str, name: str, data_type: str, known: _Known) -> None:
        response = await self._client.request(
            "POST",
            "/data_attributes",
            endpoint="POST /data_attributes",
            body={"name": name, "model": model, "data_type": data_type},
        )
        if response.status == 400:
            # Another replica may have created it since we listed: list again before giving up.
            fresh = await self._list(model)
            known.custom.update(fresh.custom)
            known.standard |= fresh.standard
            if name.lower() in known.custom:
                return
        self._raise_for(response)
        known.custom[name.lower()] = name
