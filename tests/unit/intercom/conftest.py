"""Fixtures for the executor tests: a scripted Intercom, and senders over it that run on the fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from intercom_sidecar.config import Config
from intercom_sidecar.intercom.client import IntercomClient
from intercom_sidecar.intercom.sender import IntercomSender
from tests.conftest import FakeClock
from tests.unit.intercom.scripted import FakeIntercom

SenderFactory = Callable[..., IntercomSender]


@pytest.fixture
def intercom() -> FakeIntercom:
    return FakeIntercom()


@pytest.fixture
async def make_sender(
    intercom: FakeIntercom, config_factory: Callable[..., Config], clock: FakeClock
) -> AsyncIterator[SenderFactory]:
    """`make_sender(**intercom_settings)`: an IntercomSender over the scripted Intercom, with the fake clock.

    After the test, every scripted answer must have been asked for."""
    clients: list[IntercomClient] = []

    def make(**settings: Any) -> IntercomSender:
        config = config_factory(**settings).intercom
        client = IntercomClient(config, transport=httpx.MockTransport(intercom))
        clients.append(client)
        return IntercomSender(client, config, clock=clock.now)

    yield make
    for client in clients:
        await client.aclose()
    intercom.assert_script_used()


@pytest.fixture
def sender(make_sender: SenderFactory) -> IntercomSender:
    return make_sender()
