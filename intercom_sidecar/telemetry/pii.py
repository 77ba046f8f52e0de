"""The PII policy: which trait and property keys may appear in logs and span attributes.

Traits and properties are the customers' personal data (emails, names, phone numbers, whatever a service sends).
By default none of them appears in a log line or a span attribute: only ids, call types and event names do.
`INTERCOM_SIDECAR_LOG_ALLOWED_KEYS` lists, comma-separated, the top-level keys whose values may (`plan,company_size`);
names are matched exactly (case included), and the value of an allowed key is kept whole, nested objects too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from intercom_sidecar.errors import ConfigError

__all__ = ["PiiPolicy"]

_V = TypeVar("_V")

_KEY = "INTERCOM_SIDECAR_LOG_ALLOWED_KEYS"


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    """`allowed_keys`: the trait/property keys that may be shown; empty (the default) shows none."""

    allowed_keys: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PiiPolicy:
        """Read `INTERCOM_SIDECAR_LOG_ALLOWED_KEYS`; ConfigError names it for a wildcard, which is not supported."""
        keys = frozenset(part.strip() for part in env.get(_KEY, "").split(",")) - {""}
        if wildcards := sorted(key for key in keys if "*" in key):
            raise ConfigError(_KEY, f"lists exact key names, wildcards are not supported, got {wildcards[0]!r}")
        return cls(keys)

    def allowed_items(self, mapping: Mapping[str, _V]) -> dict[str, _V]:
        """The items of `mapping` whose key is allowed, in their order."""
        return {key: value for key, value in mapping.items() if key in self.allowed_keys}
