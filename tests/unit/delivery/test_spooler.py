"""Spooler: the delivery window and the backlog behind it, over both spools, with a gated fake Sender (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from intercom_sidecar.config import QueueConfig, RetryConfig
from intercom_sidecar.delivery.dead_letters import DeadLetterStore
from intercom_sidecar.delivery.pipeline import Deferred, Delivered, Outcome, Pipeline
from intercom_sidecar.delivery.spool import Spool, SpooledEvent, SpoolEntry
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spool_sqlite import SqliteSpool
from intercom_sidecar.delivery.spooler import OutcomeCallback, Spooler
from intercom_sidecar.errors import QueueFullError
from intercom_sidecar.mapping.plan import Plan
from tests.conftest import FakeClock, appended_future
from tests.unit.delivery.test_pipeline import FakeSender, plan

pytestmark = pytest.mark.timeout(10)

RETRY = RetryConfig(initial_backoff_seconds=1.0, max_backoff_seconds=4.0, max_elapsed_seconds=30.0)
WINDOW = 4


def entry(name: str) -> SpoolEntry:
    """Event `name` of user `name[0]` (a1, b1, a2, ...); its payload is its name."""
    return SpoolEntry(name, name[0], name.encode(), "4bf92f3577b34da6a3ce929d0e0e4736", 1_700_000_000.0)


class Harness:
    def __init__(self, spool: Spool, window: int = WINDOW) -> None:
        self.spool = spool
        self.sender = FakeSender()
        self.pipeline = Pipeline(self.sender, QueueConfig(max_events=10_000, workers=2), RETRY, clock=FakeClock())
        self.loaded: list[str] = []
        self.outcomes: dict[str, list[Outcome | Deferred]] = {}
        self.most_in_memory = 0
        self.spooler = Spooler(spool, self.pipeline, window=window, load=self.load)
        self._all_done = asyncio.Event()
        self._expected = 0
        send = self.sender.send

        async def send_and_watch(plan: Plan) -> None:
            self.most_in_memory = max(self.most_in_memory, self.pipeline.depth)
            await send(plan)

        self.sender.send = send_and_watch  # type: ignore[method-assign]

    def record(self, name: str) -> OutcomeCallback:
        def on_outcome(outcome: Outcome | Deferred) -> None:
            self.outcomes.setdefault(name, []).append(outcome)
            if len(self.sender.sent) >= self._expected:
                self._all_done.set()

        return on_outcome

    def load(self, event: SpooledEvent) -> tuple[Plan, OutcomeCallback, None]:
        name = event.payload.decode()
        self.loaded.append(name)
        return plan(name), self.record(name), None

    async def accept(self, *names: str) -> list[int | None]:
        futures = [appended_future(self.spooler, entry(name), plan(name), self.record(name)) for name in names]
        return list(await asyncio.gather(*futures))

    async def delivered(self, count: int) -> None:
        self._expected = count
        if len(self.sender.sent) < count:
            self._all_done.clear()
            await self._all_done.wait()
        await self.pipeline.wait_idle()

    def in_order_per_user(self) -> bool:
        by_user: dict[str, list[int]] = {}
        for name in self.sender.sent:
            by_user.setdefault(name[0], []).append(int(name[1:]))
        return all(numbers == sorted(numbers) for numbers in by_user.values())


@pytest.fixture(params=["sqlite", "memory"])
async def make_spool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Spool]]:
    opened: list[Spool] = []

    def make() -> Spool:
        spool: Spool
        if request.param == "sqlite":
            spool = SqliteSpool(tmp_path / "spool", max_events=1000, max_bytes=1_000_000)
        else:
            spool = MemorySpool(max_events=1000, max_bytes=1_000_000)
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        await spool.close()


async def test_a_full_window_leaves_the_rest_in_the_spool_and_reads_it_back_in_order(
    make_spool: Callable[[], Spool],
) -> None:
    harness = Harness(make_spool())
    await harness.spool.open()
    harness.pipeline.start()
    names = [f"{user}{n}" for n in range(1, 6) for user in "ab"]  # a1 b1 a2 b2 ... a5 b5
    for name in names:
        harness.sender.gate(name)

    seqs = await harness.accept(*names)

    assert seqs == list(range(1, 11))
    assert harness.pipeline.depth == WINDOW
    deferred = [name for name, got in harness.outcomes.items() if got and isinstance(got[0], Deferred)]
    assert deferred == names[WINDOW:]  # acked ACCEPTED with a reason, their plans dropped
    assert "behind a backlog" in harness.outcomes[names[-1]][0].reason  # type: ignore[union-attr]
    assert harness.spooler.backlog
    assert harness.spool.depth()[0] == 10

    for gate in harness.sender.gates.values():
        gate.set()
    await harness.delivered(10)

    assert sorted(harness.sender.sent) == sorted(names)  # each once
    assert harness.in_order_per_user()
    assert harness.loaded == names[WINDOW:]  # read back from the spool in seq order
    assert harness.most_in_memory <= WINDOW
    assert not harness.spooler.backlog
    await harness.spooler.close()
    await harness.pipeline.shutdown(1)


async def test_new_events_go_behind_the_backlog_until_it_is_read(make_spool: Callable[[], Spool]) -> None:
    harness = Harness(make_spool())
    await harness.spool.open()
    harness.pipeline.start()
    harness.sender.gate("a1")
    await harness.accept("a1", "a2", "a3", "a4", "a5")  # a5 starts a backlog
    assert harness.spooler.backlog

    harness.sender.gate("a1").set()  # the window empties: a5 is read back, then a6 is queued directly
    await harness.delivered(5)
    await harness.accept("a6")
    await harness.delivered(6)

    assert harness.sender.sent == ["a1", "a2", "a3", "a4", "a5", "a6"]
    assert harness.loaded == ["a5"]
    assert harness.outcomes["a6"] == [Delivered(attempts=1)]
    await harness.spooler.close()
    await harness.pipeline.shutdown(1)


async def test_a_recovered_backlog_is_read_in_windows(make_spool: Callable[[], Spool]) -> None:
    spool = make_spool()
    await spool.open()
    names = [f"{user}{n}" for n in range(1, 26) for user in "abc"]
    await spool.append([entry(name) for name in names])
    harness = Harness(spool)
    harness.pipeline.start()

    harness.spooler.start(len(names))
    await harness.delivered(len(names))

    assert harness.loaded == names
    assert sorted(harness.sender.sent) == sorted(names)
    assert harness.in_order_per_user()
    assert harness.most_in_memory <= WINDOW
    await harness.spooler.close()
    await harness.pipeline.shutdown(1)


async def test_replays_during_a_backlog_are_delivered_once(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path, max_events=1000, max_bytes=1_000_000)
    await spool.open()
    harness = Harness(spool)
    harness.pipeline.start()
    await spool.append([entry("z1")])
    spool.dead_letter(1, reason="rejected", status=400, code="bad", attempts=1)
    for name in ("a1", "a2", "a3", "a4"):
        harness.sender.gate(name)
    await harness.accept("a1", "a2", "a3", "a4", "a5", "a6")  # a5, a6: a backlog
    await spool.list_dead_letters()  # the dead letter has committed

    with DeadLetterStore(tmp_path) as store:  # the operator CLI, from another connection
        store.replay([1])
    harness.spooler.adopt(await spool.collect_replayed())  # above the backlog: read with it, not queued twice
    in_process = await spool.replay([])  # nothing more
    harness.spooler.adopt(in_process)
    for gate in harness.sender.gates.values():
        gate.set()
    await harness.delivered(7)

    assert sorted(harness.sender.sent) == ["a1", "a2", "a3", "a4", "a5", "a6", "z1"]
    assert await spool.collect_replayed() == []
    await harness.spooler.close()
    await harness.pipeline.shutdown(1)
    await spool.close()


def small_spool(kind: str, directory: Path, *, max_events: int) -> Spool:
    if kind == "sqlite":
        return SqliteSpool(directory, max_events=max_events, max_bytes=1_000_000)
    return MemorySpool(max_events=max_events, max_bytes=1_000_000)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_duplicates_in_a_batch_do_not_crowd_out_new_events_when_the_spool_is_nearly_full(
    kind: str, tmp_path: Path
) -> None:
    spool = small_spool(kind, tmp_path, max_events=2)
    await spool.open()
    harness = Harness(spool)
    harness.sender.gate("a1")  # nothing is delivered, so nothing makes room
    harness.pipeline.start()
    await harness.accept("a1")

    # A client resends a whole batch after RETRY_LATER: a1 again, then two new events, with room for one.
    futures = [
        appended_future(harness.spooler, entry(name), plan(name), harness.record(name)) for name in ("a1", "b1", "c1")
    ]
    results = await asyncio.gather(*futures, return_exceptions=True)

    assert results[:2] == [None, 2], "the duplicate is answered as such and takes no room; b1 gets it"
    assert isinstance(results[2], QueueFullError)
    harness.sender.gate("a1").set()
    await harness.spooler.close()
    await harness.pipeline.shutdown(1)
    await spool.close()


async def test_a_replay_larger_than_the_window_is_read_back_in_windows(make_spool: Callable[[], Spool]) -> None:
    spool = make_spool()
    await spool.open()
    names = [f"{user}{n}" for n in range(1, 6) for user in "ab"]
    seqs = await spool.append([entry(name) for name in names])
    for seq in seqs:
        assert seq is not None
        spool.dead_letter(seq, reason="refused", status=400, code="bad", attempts=1)
    harness = Harness(spool)
    harness.pipeline.start()

    replayed = await spool.replay([seq for seq in seqs if seq is not None])
    harness.spooler.adopt(replayed)  # ten events for a window of four
    await harness.delivered(len(names))

    assert harness.most_in_memory <= WINDOW
    assert harness.loaded == names  # read back from the spool in seq order
    assert harness.in_order_per_user()
    await harness.spooler.close()
    await harness.pipeline.shutdown(1)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_accept_answers_each_event_once_after_the_call_and_a_failing_answer_costs_no_other(
    kind: str, tmp_path: Path
) -> None:
    spool = small_spool(kind, tmp_path, max_events=3)
    await spool.open()
    harness = Harness(spool)
    harness.sender.gate("a1")
    harness.pipeline.start()
    await harness.accept("a1")
    answers: dict[str, list[tuple[int | None, BaseException | None]]] = {}
    done = asyncio.Event()

    def answer(name: str) -> Callable[[int | None, BaseException | None], None]:
        def appended(seq: int | None, error: BaseException | None) -> None:
            answers.setdefault(name, []).append((seq, error))
            if len(answers) == 5:
                done.set()
            if name == "b1":
                raise RuntimeError("a bug in one caller")

        return appended

    # a1 again (a duplicate), b1 (whose answer raises), c1, then d1 and e1 with room for one of them.
    for name in ("a1", "b1", "c1", "d1", "e1"):
        harness.spooler.accept(entry(name), plan(name), answer(name), harness.record(name))
    assert answers == {}, "never answered from within the call"
    await done.wait()

    assert answers["a1"] == [(None, None)]
    assert answers["b1"] == [(2, None)]
    assert answers["c1"] == [(3, None)]
    assert [seq for seq, _ in answers["d1"] + answers["e1"]] == [None, None]
    assert all(isinstance(error, QueueFullError) for _, error in answers["d1"] + answers["e1"])
    harness.sender.gate("a1").set()
    for name in ("b1", "c1"):
        harness.sender.gate(name).set()
    await harness.spooler.close()
    await harness.pipeline.shutdown(1)
    await spool.close()
