"""The `Spool` behaviour both implementations share: seqs, dedupe, bounds, dead letters. Fake clock, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from intercom_sidecar.delivery.spool import Attempt, DeadLetterFilter, Spool, SpooledEvent, SpoolEntry, SpoolError
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.errors import QueueFullError, ShuttingDownError
from tests.conftest import START_TIME, FakeClock

pytestmark = pytest.mark.timeout(5)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

MakeSpool = Callable[..., Awaitable[Spool]]


def entry(message_id: str, user_key: str = "u1", size: int = 10) -> SpoolEntry:
    return SpoolEntry(message_id, user_key, message_id.encode().ljust(size, b"."), TRACE, START_TIME)


def spooled(seq: int, message_id: str, user_key: str = "u1", size: int = 10, attempts: int = 0) -> SpooledEvent:
    e = entry(message_id, user_key, size)
    return SpooledEvent(seq, e.message_id, e.user_key, e.payload, e.trace_id, e.accepted_at, attempts)


async def committed(spool: Spool) -> None:
    """Wait until the changes queued so far have committed: the bounds free the room of deleted events then."""
    await spool.sync()


def make(kind: str, directory: Path, **settings: Any) -> Spool:
    """A spool of `kind` with generous bounds unless `settings` says otherwise."""
    settings = {"max_events": 1000, "max_bytes": 1_000_000, **settings}
    if kind == "sqlite":
        return SqliteSpool(directory, **settings)
    return MemorySpool(**settings)


@pytest.fixture(params=["sqlite", "memory"])
async def make_spool(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[MakeSpool]:
    """Opens a spool of each kind (closed after the test); keyword arguments override the settings."""
    opened: list[Spool] = []

    async def open_spool(**settings: Any) -> Spool:
        spool = make(request.param, tmp_path / "spool", clock=clock.now, **settings)
        await spool.open()
        opened.append(spool)
        return spool

    yield open_spool
    for spool in opened:
        await spool.close()


async def test_seqs_increase_in_acceptance_order(make_spool: MakeSpool) -> None:
    spool = await make_spool()

    first = await spool.append([entry("m1"), entry("m2", "u2")])
    second = await spool.append([entry("m3")])

    assert first == [1, 2]
    assert second == [3]
    assert spool.depth() == (3, 30)
    assert await spool.append([]) == []


async def test_a_repeated_message_id_is_a_duplicate(make_spool: MakeSpool) -> None:
    spool = await make_spool()
    await spool.append([entry("m1")])

    assert await spool.append([entry("m1")]) == [None]  # still pending
    assert await spool.append([entry("m2"), entry("m2"), entry("m3")]) == [2, None, 3]  # repeated in one batch
    spool.complete([1])
    await committed(spool)
    assert await spool.append([entry("m1")]) == [None]  # delivered, but within the window
    assert spool.depth() == (2, 20)


@pytest.mark.parametrize("size", [2, 127, 128, 300])  # the SQLite spool inserts a batch in chunks of 128, 64, ...
async def test_a_large_batch_gets_consecutive_seqs_and_keeps_every_payload(make_spool: MakeSpool, size: int) -> None:
    spool = await make_spool(max_events=10_000)
    await spool.append([entry("before")])
    batch = [entry(f"m{n}", f"u{n % 7}", size=10 + n % 5) for n in range(size)]

    assert await spool.append(batch) == list(range(2, size + 2))
    assert await spool.read_pending(1, 10_000) == [
        spooled(seq, e.message_id, e.user_key, size=len(e.payload)) for seq, e in enumerate(batch, 2)
    ]
    assert all(type(event.payload) is bytes for event in await spool.read_pending(0, 10_000))
    assert await spool.append([entry("after"), entry("m0")]) == [size + 2, None]


async def test_a_duplicate_deep_in_a_large_batch_is_answered_and_the_rest_stored(make_spool: MakeSpool) -> None:
    spool = await make_spool(max_events=10_000)
    await spool.append([entry("m250")])
    batch = [entry(f"m{n}") for n in range(300)] + [entry("m5")]  # one seen before, one repeated in the batch

    seqs = await spool.append(batch)

    assert seqs[250] is None and seqs[300] is None
    stored = [seq for seq in seqs if seq is not None]
    assert stored == list(range(2, 301))
    assert spool.depth() == (300, 3000)


async def test_concurrent_batches_with_the_same_message_id_store_it_once(make_spool: MakeSpool) -> None:
    spool = await make_spool()

    results = await asyncio.gather(*(spool.append([entry("same")]) for _ in range(5)))

    assert sorted(results, key=str) == [[1], [None], [None], [None], [None]]
    assert spool.depth() == (1, 10)


async def test_a_message_id_is_new_again_after_the_dedupe_window(make_spool: MakeSpool, clock: FakeClock) -> None:
    spool = await make_spool(dedupe_window_seconds=60.0)
    await spool.append([entry("m1")])

    clock.advance(59.0)
    assert await spool.append([entry("m1")]) == [None]
    clock.advance(2.0)
    assert await spool.append([entry("m1"), entry("m2")]) == [2, 3]
    assert await spool.append([entry("m1")]) == [None]  # seen again just now


async def test_the_events_bound_refuses_a_whole_batch_until_room_is_made(make_spool: MakeSpool) -> None:
    spool = await make_spool(max_events=3, full_retry_after_seconds=2.5)
    await spool.append([entry("m1"), entry("m2")])

    with pytest.raises(QueueFullError) as full:
        await spool.append([entry("m3"), entry("m4")])

    assert full.value.retry_after == 2.5
    assert spool.depth() == (2, 20)
    assert await spool.append([entry("m3")]) == [3]
    with pytest.raises(QueueFullError):
        await spool.append([entry("m4")])
    spool.complete([1])
    await committed(spool)
    assert await spool.append([entry("m4")]) == [4]


async def test_the_bytes_bound_counts_payload_bytes(make_spool: MakeSpool) -> None:
    spool = await make_spool(max_bytes=100)
    await spool.append([entry("m1", size=40), entry("m2", size=40)])

    with pytest.raises(QueueFullError):
        await spool.append([entry("m3", size=30)])

    assert await spool.append([entry("m3", size=20)]) == [3]
    assert spool.depth() == (3, 100)
    spool.dead_letter(1, reason="gone", status=404, code="not_found", attempts=1)
    await committed(spool)
    assert spool.depth() == (2, 60)
    assert await spool.append([entry("m4", size=40)]) == [4]


async def test_appends_in_flight_count_against_the_bound(make_spool: MakeSpool) -> None:
    spool = await make_spool(max_events=2)

    results = await asyncio.gather(*(spool.append([entry(f"m{n}")]) for n in range(3)), return_exceptions=True)

    assert sum(isinstance(result, QueueFullError) for result in results) == 1
    assert spool.depth() == (2, 20)


async def test_duplicates_take_no_room(make_spool: MakeSpool) -> None:
    spool = await make_spool(max_events=2)
    await spool.append([entry("m1")])

    assert await spool.append([entry("m1")]) == [None]
    assert await spool.append([entry("m2")]) == [2]


async def test_complete_forgets_events_and_ignores_unknown_seqs(make_spool: MakeSpool) -> None:
    spool = await make_spool()
    await spool.append([entry("m1"), entry("m2"), entry("m3")])

    spool.complete([1, 3, 99])
    spool.complete([1])
    await committed(spool)

    assert spool.depth() == (1, 10)


async def test_a_dead_letter_keeps_the_event_its_reason_and_every_attempt(
    make_spool: MakeSpool, clock: FakeClock
) -> None:
    spool = await make_spool()
    await spool.append([entry("m1", "user-7")])
    spool.record_attempt(1, "intercom 503: busy")
    clock.advance(4.0)
    spool.record_attempt(1, "timeout")
    clock.advance(1.0)

    spool.dead_letter(1, reason="retries exhausted after 3 attempts", status=503, code="busy", attempts=3)
    await committed(spool)

    assert spool.depth() == (0, 0)
    [letter] = await spool.list_dead_letters()
    assert letter.seq == 1
    assert (letter.message_id, letter.user_key, letter.payload) == ("m1", "user-7", entry("m1").payload)
    assert (letter.trace_id, letter.accepted_at) == (TRACE, START_TIME)
    assert (letter.reason, letter.status, letter.code, letter.attempts) == (
        "retries exhausted after 3 attempts",
        503,
        "busy",
        3,
    )
    assert letter.dead_at == START_TIME + 5.0
    assert letter.outcomes == (Attempt(START_TIME, "intercom 503: busy"), Attempt(START_TIME + 4.0, "timeout"))
    assert await spool.get_dead_letter("m1") == letter
    assert await spool.get_dead_letter("m2") is None


async def test_a_transport_failure_dead_letter_has_no_status(make_spool: MakeSpool) -> None:
    spool = await make_spool()
    await spool.append([entry("m1")])

    spool.dead_letter(1, reason="connect error", status=None, code="connect", attempts=1)
    spool.dead_letter(1, reason="twice", status=None, code="x", attempts=1)  # no longer pending: ignored
    await committed(spool)

    [letter] = await spool.list_dead_letters()
    assert (letter.status, letter.code, letter.outcomes) == (None, "connect", ())


async def _bury(spool: Spool, clock: FakeClock) -> None:
    """Five dead letters, ten seconds apart: seqs 1..5, users u1/u2, reasons by kind."""
    kinds = [("u1", "intercom 404 not_found: User Not Found"), ("u2", "Retries exhausted")] * 2
    kinds.append(("u2", "intercom 404 not_found: Contact Not Found"))
    await spool.append([entry(f"m{n}", user) for n, (user, _) in enumerate(kinds, 1)])
    for seq, (_, reason) in enumerate(kinds, 1):
        spool.dead_letter(seq, reason=reason, status=None, code="", attempts=1)
        await committed(spool)
        clock.advance(10.0)


@pytest.mark.parametrize(
    ("where", "seqs"),
    [
        (DeadLetterFilter(), [1, 2, 3, 4, 5]),
        (DeadLetterFilter(since=START_TIME + 10.0), [2, 3, 4, 5]),
        (DeadLetterFilter(until=START_TIME + 20.0), [1, 2]),
        (DeadLetterFilter(since=START_TIME + 10.0, until=START_TIME + 30.0), [2, 3]),
        (DeadLetterFilter(reason="NOT_FOUND"), [1, 3, 5]),
        (DeadLetterFilter(reason="contact"), [5]),
        (DeadLetterFilter(user_key="u2"), [2, 4, 5]),
        (DeadLetterFilter(user_key="u2", reason="not found"), [5]),
        (DeadLetterFilter(message_id="m4"), [4]),
        (DeadLetterFilter(message_id="nope"), []),
        (DeadLetterFilter(message_ids=("m2", "m5", "nope")), [2, 5]),
        (DeadLetterFilter(after_seq=3), [4, 5]),
        (DeadLetterFilter(after_seq=1, user_key="u2"), [2, 4, 5]),
    ],
)
async def test_dead_letters_are_listed_by_filter(
    make_spool: MakeSpool, clock: FakeClock, where: DeadLetterFilter, seqs: list[int]
) -> None:
    spool = await make_spool()
    await _bury(spool, clock)

    assert [letter.seq for letter in await spool.list_dead_letters(where)] == seqs
    assert [letter.seq for letter in await spool.list_dead_letters(where, limit=2)] == seqs[:2]


async def test_purge_deletes_the_matching_dead_letters(make_spool: MakeSpool, clock: FakeClock) -> None:
    spool = await make_spool()
    await _bury(spool, clock)

    assert await spool.purge(DeadLetterFilter(reason="not found", until=START_TIME + 40.0)) == 2
    assert [letter.seq for letter in await spool.list_dead_letters()] == [2, 4, 5]
    assert await spool.purge(DeadLetterFilter()) == 3
    assert await spool.list_dead_letters() == []


async def test_replay_puts_dead_letters_back_after_every_pending_event(make_spool: MakeSpool) -> None:
    spool = await make_spool()
    await spool.append([entry("m1"), entry("m2"), entry("m3")])
    spool.record_attempt(2, "timeout")
    spool.dead_letter(2, reason="retries exhausted", status=None, code="timeout", attempts=5)
    await committed(spool)
    await spool.append([entry("m4")])

    replayed = await spool.replay([2, 77])

    assert replayed == [spooled(5, "m2")]  # a new seq, attempts reset
    assert await spool.list_dead_letters() == []
    assert spool.depth() == (4, 40)
    assert await spool.replay([2]) == []
    assert await spool.append([entry("m2")]) == [None]  # replay does not reopen the dedupe window


async def test_quarantine_takes_an_event_out_of_pending(make_spool: MakeSpool) -> None:
    spool = await make_spool()
    await spool.append([entry("m1"), entry("m2")])

    spool.quarantine(1, "payload does not decode")
    await committed(spool)

    assert spool.depth() == (1, 10)
    assert await spool.list_dead_letters() == []


async def test_after_close_every_call_says_shutting_down(make_spool: MakeSpool) -> None:
    spool = await make_spool()
    await spool.append([entry("m1")])
    await spool.close()
    await spool.close()  # idempotent

    with pytest.raises(ShuttingDownError):
        await spool.append([entry("m2")])
    with pytest.raises(ShuttingDownError):
        spool.complete([1])
        await committed(spool)
    with pytest.raises(ShuttingDownError):
        await spool.list_dead_letters()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_a_spool_must_be_opened_first(kind: str, tmp_path: Path) -> None:
    spool = make(kind, tmp_path)

    with pytest.raises(SpoolError, match="not open"):
        await spool.append([entry("m1")])
    assert spool.depth() == (0, 0)
    await spool.close()
