"""`intercom-sidecar check`: is the configuration valid, and does Intercom accept the token?

Loads the configuration from the environment exactly as `serve` does, then asks Intercom `GET /me` with the token
(the same base URL, `Intercom-Version` and headers as delivery) and prints the app it belongs to, the region and
the API version. Every failure is one line saying what to fix. Exit status:

    0  the configuration is valid and Intercom accepted the token
    1  Intercom answered, but refused the token or the request (401, 403, 400 for the API version, 429, 5xx, ...)
    2  the configuration is invalid (the line names the environment variable)
    3  Intercom could not be reached (connection refused, DNS, TLS, timeout)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from intercom_sidecar.config import REGION_URLS, Config, load_config
from intercom_sidecar.errors import ConfigError, RetryableError
from intercom_sidecar.intercom.client import IntercomClient

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNREACHABLE", "CheckResult", "add_arguments", "run"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3

_CHECKED_CONFIG = "configuration: every INTERCOM_* and INTERCOM_SIDECAR_* variable, as `serve` reads them"
_CHECKED_TOKEN = "token: GET /me on the Intercom API, with the Intercom-Version header"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What `check` found; `error` is empty when everything passed."""

    exit_code: int
    error: str = ""
    api_url: str = ""
    region: str = ""
    api_version: str = ""
    token_source: str = ""
    app: dict[str, str] = field(default_factory=dict)
    checked: tuple[str, ...] = ()
    """What was checked, in order; a failure is in the last one."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


async def run(args: argparse.Namespace) -> int:
    result = await check(dict(os.environ))
    if args.json:
        print(json.dumps({"ok": result.exit_code == EXIT_OK, **asdict(result)}))
    if result.error:
        print(f"intercom-sidecar check: {result.error}", file=sys.stderr)
    elif not args.json:
        _print_text(result)
    return result.exit_code


async def check(env: dict[str, str]) -> CheckResult:
    try:
        config = load_config(env)
    except ConfigError as error:
        return CheckResult(EXIT_CONFIG, error=f"configuration error: {error}", checked=(_CHECKED_CONFIG,))
    where: dict[str, Any] = {
        "api_url": config.intercom.base_url,
        "region": _region(config.intercom.base_url),
        "api_version": config.intercom.api_version,
        "token_source": _token_source(config),
        "checked": (_CHECKED_CONFIG, _CHECKED_TOKEN),
    }
    try:
        async with IntercomClient(config.intercom) as client:
            response = await client.request("GET", "/me", endpoint="GET /me")
    except RetryableError as error:
        return CheckResult(
            EXIT_UNREACHABLE,
            error=f"cannot reach Intercom at {config.intercom.base_url} ({error.message}): "
            "check the network, and INTERCOM_REGION or INTERCOM_API_URL",
            **where,
        )
    if not response.ok:
        code, message = response.error
        return CheckResult(EXIT_REFUSED, error=_refusal(config, response.status, code, message), **where)
    return CheckResult(EXIT_OK, app=_app(response.json()), **where)


def _refusal(config: Config, status: int, code: str, message: str) -> str:
    said = f"{status}{' ' + code if code else ''}{': ' + message if message else ''}"
    token = _token_source(config)
    if status == 401:
        return (
            f"the token was rejected by Intercom ({said}): set {token} to a valid access token "
            "(or INTERCOM_REGION, if the app is hosted in another region)"
        )
    if status == 403:
        return f"the token is not allowed to read the app ({said}): give the access token in {token} more scopes"
    if code == "intercom_version_invalid":
        return f"Intercom does not know API version {config.intercom.api_version} ({said}): fix INTERCOM_API_VERSION"
    if status == 429:
        return f"Intercom's rate limit is spent ({said}): try again in a minute"
    return f"Intercom answered GET /me with {said}: try again later, or check INTERCOM_API_URL"


def _app(me: Any) -> dict[str, str]:
    """The app of a `GET /me` answer (an admin): its name, id and region, as far as they are there."""
    app = me.get("app") if isinstance(me, dict) else None
    if not isinstance(app, dict):
        return {}
    found = {"name": app.get("name"), "id": app.get("id_code"), "region": app.get("region")}
    return {key: str(value) for key, value in found.items() if value is not None}


def _region(base_url: str) -> str:
    for region, url in REGION_URLS.items():
        if base_url == url:
            return region
    return "custom"


def _token_source(config: Config) -> str:
    return "INTERCOM_ACCESS_TOKEN_FILE" if config.intercom.token_file is not None else "INTERCOM_ACCESS_TOKEN"


def _print_text(result: CheckResult) -> None:
    app = result.app
    name = f'"{app.get("name", "?")}" (id {app.get("id", "?")})'
    print("intercom-sidecar check: OK")
    print(f"  app          {name}{', hosted in ' + app['region'] if 'region' in app else ''}")
    region = "set by INTERCOM_API_URL" if result.region == "custom" else f"region {result.region}"
    print(f"  API          {result.api_url} ({region}), Intercom-Version {result.api_version}")
    print(f"  token        from {result.token_source}, accepted by Intercom")
    print("  checked      " + "\n               ".join(result.checked))
