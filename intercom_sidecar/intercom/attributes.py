"""Custom data attributes: Intercom 2.x rejects writes to attributes that do not exist, so create them first.

The names Intercom knows are listed once per model (`GET /data_attributes`); a missing attribute is created
once (`POST /data_attributes` with the mapped `data_type`) and remembered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from intercom_sidecar.intercom.client import IntercomClient, IntercomResponse

__all__ = ["DataAttributes"]


class DataAttributes:
    def __init__(self, client: IntercomClient, raise_for: Callable[[IntercomResponse], None]) -> None:
        self._client = client
        self._raise_for = raise_for
        self._known: dict[str, set[str]] = {}
        self._lock = asyncio.Lock()

    async def ensure(self, model: str, types: Mapping[str, str]) -> None:
        """Make sure every attribute in `types` (name -> data_type) exists on `model` (contact or company)."""
        known = self._known.get(model)
        if known is not None and all(name in known for name in types):
            return
        async with self._lock:
            known = self._known.get(model)
            if known is None:
                known = self._known[model] = await self._list(model)
            for name, data_type in types.items():
                if name not in known:
                    await self._create(model, name, data_type, known)

    async def _list(self, model: str) -> set[str]:
        response = await self._client.request(
            "GET", "/data_attributes", endpoint="GET /data_attributes", params={"model": model}
        )
        self._raise_for(response)
        data = response.json() or {}
        return {str(item["name"]) for item in data.get("data", []) if isinstance(item, dict) and "name" in item}

    async def _create(self, model: str, name: str, data_type: str, known: set[str]) -> None:
        response = await self._client.request(
            "POST",
            "/data_attributes",
            endpoint="POST /data_attributes",
            body={"name": name, "model": model, "data_type": data_type},
        )
        if not response.ok and response.status == 400:
            # Someone (another replica) may have created it since we listed: list again before giving up.
            known |= await self._list(model)
            if name in known:
                return
        self._raise_for(response)
        known.add(name)
