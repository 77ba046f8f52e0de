"""The ledger: every API request the fake received, with the status it answered."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Ledger", "LedgerEntry"]

JSON = Any


@dataclass(slots=True)
class LedgerEntry:
    """One request the fake received. ``status`` 0 means the connection was reset instead of answered."""

    seq: int
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: JSON
    status: int
    request_id: str
    fault: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return asdict(self)


class Ledger(list[LedgerEntry]):
    """Every API request received, oldest first; keeps at most ``max_entries`` (``None``: unbounded)."""

    def __init__(self, max_entries: int | None = 100_000) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.total = 0

    def record(self, entry: LedgerEntry) -> None:
        self.append(entry)
        self.total += 1
        if self.max_entries is not None and len(self) > self.max_entries + self.max_entries // 10:
            del self[: len(self) - self.max_entries]

    def reset(self) -> None:
        self.clear()
        self.total = 0

    def matching(self, method: str | None = None, path_prefix: str = "") -> list[LedgerEntry]:
        return [e for e in self if (method is None or e.method == method.upper()) and e.path.startswith(path_prefix)]
