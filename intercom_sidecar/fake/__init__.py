"""A faithful fake of Intercom's REST API (v2.16), served over real HTTP on loopback.

Used by tests, the ``make run`` demo and the benchmarks. See :class:`FakeIntercom`.
"""

from intercom_sidecar.fake.faults import Faults, RateLimiter, ScriptedFault
from intercom_sidecar.fake.ledger import Ledger, LedgerEntry
from intercom_sidecar.fake.server import API_VERSION, FakeIntercom
from intercom_sidecar.fake.state import Company, Contact, DataAttribute, DataEvent, State

__all__ = [
    "API_VERSION",
    "Company",
    "Contact",
    "DataAttribute",
    "DataEvent",
    "FakeIntercom",
    "Faults",
    "Ledger",
    "LedgerEntry",
    "RateLimiter",
    "ScriptedFault",
    "State",
]
