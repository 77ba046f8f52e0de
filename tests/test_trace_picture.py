"""The README's trace picture is drawn from a real trace: the script that draws it still works, and shows the tree."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "render_trace.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_trace", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_trace_picture_shows_the_callers_trace_down_to_the_http_calls() -> None:
    render_trace = _load()
    spans = await render_trace.capture_trace()
    svg = render_trace.render_svg(spans)

    names = re.findall(r'<text x="(\d+)" y="\d+">([^<]+)</text>', svg)
    assert names[0] == ("8", "checkout: POST /orders")  # the caller's span is the root
    assert [name for _, name in names].count("intercom_sidecar.event") == 2  # identify and track
    assert ("50", "POST /events") in names  # HTTP calls two levels under the event span
    assert "status_code=503" in svg and "status_code=202" in svg  # the retried attempt, then the delivery
    assert len({span.context.trace_id for span in spans}) == 1
