"""`serve` tunes the garbage collector once started: start-up objects frozen, a larger young generation."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from intercom_sidecar.runtime import GC_THRESHOLDS, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_objects_are_frozen_and_young_collections_are_rarer(restored_gc: None) -> None:
    built_at_start = [[n] for n in range(10)]  # lists: objects the collector tracks
    tune_garbage_collector()

    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(built_at_start)
    assert gc.get_count()[0] < GC_THRESHOLDS[0]
