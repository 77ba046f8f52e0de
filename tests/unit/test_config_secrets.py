"""`FileWatch`: when a secret file is read again."""

from __future__ import annotations

import os
from pathlib import Path

from intercom_sidecar.config_secrets import FileWatch, read_token_file


def _bump(path: Path, text: str) -> None:
    """Write `text` and move the modification time on, so the change shows even on a coarse clock."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10_000_000, before + 10_000_000))


def test_an_edit_between_loading_and_watching_is_seen_at_the_first_look(tmp_path: Path) -> None:
    path = tmp_path / "token"
    _bump(path, "first-token-value")
    loaded = read_token_file(path)  # what the configuration holds
    _bump(path, "second-token-value")  # rotated before the watch began
    watch = FileWatch(path)

    assert watch.changed()
    assert read_token_file(watch.path) != loaded
    assert not watch.changed()


def test_an_unchanged_file_answers_true_once_then_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "token"
    _bump(path, "first-token-value")
    watch = FileWatch(path)

    assert [watch.changed(), watch.changed()] == [True, False]
    _bump(path, "second-token-value")
    assert [watch.changed(), watch.changed()] == [True, False]


def test_a_missing_file_is_reported_once_and_its_return_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "token"
    watch = FileWatch(path)

    assert [watch.changed(), watch.changed()] == [True, False]
    _bump(path, "first-token-value")
    assert watch.changed()
    path.unlink()
    assert [watch.changed(), watch.changed()] == [True, False]
