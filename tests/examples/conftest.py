"""The end-to-end fixtures (fake Intercom, sidecar on loopback), shared with tests/e2e."""

from tests.e2e.conftest import fake_intercom, sidecar, start_sidecar

__all__ = ["fake_intercom", "sidecar", "start_sidecar"]
