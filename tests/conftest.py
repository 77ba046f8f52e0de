"""Shared fixtures: a fake clock (no real sleeps), a seeded random source, and a config factory."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings

from intercom_sidecar.config import Config, IntercomConfig, Secret
from intercom_sidecar.delivery.spool import SpoolEntry
from intercom_sidecar.delivery.spooler import OutcomeCallback, Spooler
from intercom_sidecar.mapping.plan import Plan

# Hypothesis: `default` keeps `make test` fast; `fuzz` (`make fuzz`, HYPOTHESIS_PROFILE=fuzz) runs long. No
# deadline: the first example of a test pays for loading Intercom's OpenAPI description, and the machine is shared.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TEST_TOKEN = "tok_test_9f8e7d6c5b4a"
"""The access token tests use; it must never show up in an error, a log line or a repr."""

START_TIME = 1_700_000_000.0
"""Where a `FakeClock` starts: 2023-11-14T22:13:20Z."""


class FakeClock:
    """A `delivery.clock.Clock` whose `sleep` advances time at once and records each requested delay."""

    def __init__(self, start: float = START_TIME) -> None:
        self.time = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += max(0.0, seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would; takes no time


def appended_future(
    spooler: Spooler, entry: SpoolEntry, plan: Plan, on_outcome: OutcomeCallback | None = None
) -> asyncio.Future[int | None]:
    """`spooler.accept` with its append's end as a future: the seq once durable, None for a duplicate, or the error."""
    future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    def appended(seq: int | None, error: BaseException | None) -> None:
        if error is None:
            future.set_result(seq)
        else:
            future.set_exception(error)

    spooler.accept(entry, plan, appended, on_outcome)
    return future


@pytest.fixture(autouse=True)
def _event_view_on_a_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sidecar process a test starts serves its event view on a free loopback port, not the default 8090 (which
    two tests, or two checkouts testing at once, would both want)."""
    monkeypatch.setenv("INTERCOM_SIDECAR_ADMIN_LISTEN", "127.0.0.1:0")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


def make_config(**intercom: Any) -> Config:
    """A valid `Config` with the test token; keyword arguments override `IntercomConfig` fields."""
    settings: dict[str, Any] = {"token": Secret(TEST_TOKEN), "base_url": "https://api.intercom.test"}
    settings.update(intercom)
    return Config(intercom=IntercomConfig(**settings))


@pytest.fixture
def config_factory() -> Callable[..., Config]:
    return make_config
