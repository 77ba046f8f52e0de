"""How the event view's browser test (and `scripts/screenshot_event_view.py`) start Debian's headless Chromium,
never a downloaded one.

This machine has no outside network: without these flags Chromium tries to reach Google (updates, sync, field
trials, QUIC) at every start.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["CHROMIUM_ARGS", "chromium_path"]

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """Debian's `chromium` (package chromium), or None when it is not installed."""
    debian = Path("/usr/bin/chromium")
    return str(debian) if debian.exists() else shutil.which("chromium")
