"""`make buf-breaking` catches a breaking change to the proto against the committed baseline image, offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENT_PROTO = Path("intercom_sidecar/v1/event.proto")


@pytest.fixture(scope="module")
def buf() -> list[str]:
    """buf from npm at the Makefile's version, as `make buf-lint` and `make buf-breaking` run it."""
    npx = shutil.which("npx")
    if npx is None:
        if os.environ.get("CI"):
            pytest.fail("npx is needed to run buf in CI")
        pytest.skip("npx is not installed: buf cannot run")
    found = re.search(r"^BUF_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, "the Makefile pins BUF_VERSION"
    return [npx, "--yes", f"@bufbuild/buf@{found.group(1)}"]


def _breaking(buf: list[str], tmp_path: Path, edit: Callable[[str], str]) -> subprocess.CompletedProcess[str]:
    """`buf breaking` on a scratch copy of proto/ whose event.proto went through `edit`."""
    proto = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", proto)
    original = (proto / EVENT_PROTO).read_text()
    edited = edit(original)
    assert edited != original, "the edit changed nothing"
    (proto / EVENT_PROTO).write_text(edited)
    return subprocess.run(
        [*buf, "breaking", "--against", "buf.baseline.binpb"],
        cwd=proto,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_renumbering_a_field_is_a_breaking_change(buf: list[str], tmp_path: Path) -> None:
    result = _breaking(buf, tmp_path, lambda text: text.replace("string reason = 3;", "string reason = 9;"))
    assert result.returncode != 0
    assert 'field "3" with name "reason" on message "Ack"' in result.stdout, result.stdout + result.stderr


def test_adding_a_field_is_not_a_breaking_change(buf: list[str], tmp_path: Path) -> None:
    result = _breaking(
        buf, tmp_path, lambda text: text.replace("string reason = 3;", "string reason = 3;\n  string detail = 6;")
    )
    assert result.returncode == 0, result.stdout + result.stderr
