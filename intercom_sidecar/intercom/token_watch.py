"""Token rotation and recovery from a refused token, without a restart.

Every few seconds the token file (`INTERCOM_ACCESS_TOKEN_FILE`, e.g. a mounted Kubernetes Secret) is read again;
a new token is used from the next request on and resumes a paused delivery. While delivery is paused because
Intercom refuses the token, Intercom is also asked now and then (`GET /me`) whether the token works again (a
revoked-then-restored token, or a token from the environment that cannot change).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from intercom_sidecar.config import IntercomConfig, read_token_file
from intercom_sidecar.config_secrets import FileWatch
from intercom_sidecar.errors import ConfigError, RetryableError
from intercom_sidecar.intercom.client import IntercomClient
from intercom_sidecar.telemetry.logs import register_secret

__all__ = ["watch_token"]

_log = logging.getLogger(__name__)

PROBE_SECONDS = 30.0
"""While paused, how often to ask Intercom whether the token works again."""


async def watch_token(
    client: IntercomClient,
    config: IntercomConfig,
    *,
    paused: Callable[[], bool],
    resume: Callable[[], None],
    check_seconds: float,
    probe_seconds: float = PROBE_SECONDS,
) -> None:
    """Run until cancelled."""
    current = config.token
    loop = asyncio.get_running_loop()
    last_probe = loop.time()
    # The file is read again only when it changed, so a broken one is reported once.
    watch = None if config.token_file is None else FileWatch(config.token_file)
    while True:
        await asyncio.sleep(check_seconds)
        if watch is not None and watch.changed():
            try:
                token = read_token_file(watch.path)
            except ConfigError as error:
                _log.warning("Cannot re-read the access token: %s.", error.problem)
                continue
            if token != current:
                current = token
                register_secret(token.reveal())
                client.set_token(token)
                _log.warning("Picked up a new access token from `%s`.", watch.path)
                resume()
                continue
        if paused() and loop.time() - last_probe >= probe_seconds:
            last_probe = loop.time()
            if await _token_works(client):
                resume()


async def _token_works(client: IntercomClient) -> bool:
    try:
        response = await client.request("GET", "/me", endpoint="GET /me")
    except RetryableError:
        return False
    return response.ok
