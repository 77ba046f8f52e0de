"""Pipeline: a fake Sender gated with asyncio.Events (no sleeps), a fake clock for retries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable

import pytest

from intercom_sidecar.config import QueueConfig, RetryConfig
from intercom_sidecar.delivery.pipeline import Abandoned, Delivered, Outcome, Pipeline, Rejected
from intercom_sidecar.errors import (
    InternalError,
    PermanentError,
    QueueFullError,
    RetriesExhaustedError,
    RetryableError,
    ShuttingDownError,
    UnauthorizedError,
)
from intercom_sidecar.mapping.plan import ContactRef, CreateDataEvent, Plan
from tests.conftest import FakeClock

pytestmark = pytest.mark.timeout(5)

RETRY = RetryConfig(initial_backoff_seconds=1.0, max_backoff_seconds=4.0, max_elapsed_seconds=30.0)
STOPPED_DURING = Abandoned("the sidecar stopped before delivery finished")
STOPPED_BEFORE = Abandoned("the sidecar stopped before delivery started")


def plan(name: str) -> Plan:
    return Plan(steps=(CreateDataEvent(contact=ContactRef(external_id="u", email=None), body={"event_name": name}),))


def name_of(plan: Plan) -> str:
    return str(plan.steps[0].body["event_name"])


class FakeSender:
    """Records each plan it is given. A plan with a gate waits for it; a scripted error list is raised first."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.sent: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.errors: dict[str, list[Exception]] = {}
        self._started_events: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def wait_started(self, name: str) -> None:
        await self._started_events.setdefault(name, asyncio.Event()).wait()

    async def send(self, plan: Plan) -> None:
        name = name_of(plan)
        self.started.append(name)
        self._started_events.setdefault(name, asyncio.Event()).set()
        if name in self.gates:
            await self.gates[name].wait()
        errors = self.errors.get(name)
        if errors:
            raise errors.pop(0)
        self.sent.append(name)


class Outcomes:
    """The `done` callbacks: one outcome per plan name, and a way to wait for it."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[Outcome]] = {}
        self.order: list[str] = []
        self._events: dict[str, asyncio.Event] = {}

    def done(self, name: str) -> Callable[[Outcome], None]:
        def record(outcome: Outcome) -> None:
            self.by_name.setdefault(name, []).append(outcome)
            self.order.append(name)
            self._events.setdefault(name, asyncio.Event()).set()

        return record

    async def wait(self, *names: str) -> None:
        for name in names:
            await self._events.setdefault(name, asyncio.Event()).wait()

    def __getitem__(self, name: str) -> Outcome:
        (outcome,) = self.by_name[name]  # exactly one outcome per plan
        return outcome


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
async def make_pipeline(
    sender: FakeSender, clock: FakeClock, rng: random.Random
) -> AsyncIterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(*, workers: int = 4, max_events: int = 100, full_retry_after: float = 1.0) -> Pipeline:
        queue = QueueConfig(max_events=max_events, workers=workers, full_retry_after_seconds=full_retry_after)
        pipeline = Pipeline(sender, queue, RETRY, clock=clock, rng=rng)
        pipeline.start()
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        for gate in sender.gates.values():
            gate.set()
        await pipeline.shutdown(0)


def submit(pipeline: Pipeline, outcomes: Outcomes, key: str, *names: str) -> None:
    for name in names:
        pipeline.submit(key, plan(name), outcomes.done(name))


async def test_one_user_is_delivered_in_order(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=4)
    names = [f"a{n}" for n in range(8)]

    submit(pipeline, outcomes, "a", *names)
    await outcomes.wait(*names)

    assert sender.sent == names
    assert outcomes.order == names
    assert all(outcomes[name] == Delivered(attempts=1) for name in names)
    assert pipeline.depth == 0


async def test_interleaved_users_keep_their_own_order(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=3)
    for n in range(5):
        for key in ("a", "b", "c"):
            submit(pipeline, outcomes, key, f"{key}{n}")

    await pipeline.wait_idle()

    for key in ("a", "b", "c"):
        assert [name for name in sender.sent if name[0] == key] == [f"{key}{n}" for n in range(5)]


async def test_a_slow_user_does_not_block_others(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=2)
    slow = sender.gate("a1")

    submit(pipeline, outcomes, "a", "a1", "a2")
    submit(pipeline, outcomes, "b", "b1", "b2", "b3")
    await outcomes.wait("b1", "b2", "b3")

    assert sender.sent == ["b1", "b2", "b3"]
    assert "a2" not in sender.started  # held behind a1, the same user
    assert pipeline.depth == 2

    slow.set()
    await outcomes.wait("a1", "a2")
    assert sender.sent[-2:] == ["a1", "a2"]


async def test_full_queue_raises_queue_full_with_retry_after(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=1, max_events=2, full_retry_after=3.0)
    sender.gate("a1")
    submit(pipeline, outcomes, "a", "a1", "a2")

    with pytest.raises(QueueFullError) as caught:
        submit(pipeline, outcomes, "b", "b1")

    assert caught.value.retry_after == 3.0
    assert pipeline.depth == 2
    assert "b1" not in outcomes.by_name  # refused at once: no outcome will follow


async def test_retryable_error_is_retried_on_the_fake_clock(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes, clock: FakeClock
) -> None:
    pipeline = make_pipeline()
    sender.errors["a1"] = [RetryableError("down", status=503), RetryableError("down", status=503)]

    submit(pipeline, outcomes, "a", "a1")
    await outcomes.wait("a1")

    assert outcomes["a1"] == Delivered(attempts=3)
    assert len(clock.sleeps) == 2
    assert sender.started == ["a1", "a1", "a1"]


async def test_permanent_error_is_rejected_without_retry(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes, clock: FakeClock
) -> None:
    pipeline = make_pipeline()
    refused = PermanentError("User Not Found", status=404, code="not_found")
    sender.errors["a1"] = [refused]

    submit(pipeline, outcomes, "a", "a1", "a2")
    await outcomes.wait("a1", "a2")

    assert outcomes["a1"] == Rejected(refused)
    assert outcomes["a2"] == Delivered(attempts=1)  # the user's next event still goes
    assert sender.started == ["a1", "a2"]
    assert clock.sleeps == []


async def test_exhausted_retries_are_rejected(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline()
    sender.errors["a1"] = [RetryableError("slow", status=429, retry_after=3600.0)]

    submit(pipeline, outcomes, "a", "a1")
    await outcomes.wait("a1")

    outcome = outcomes["a1"]
    assert isinstance(outcome, Rejected)
    assert isinstance(outcome.error, RetriesExhaustedError)


async def test_unexpected_exception_is_rejected_as_internal_and_the_worker_survives(
    make_pipeline: Callable[..., Pipeline],
    sender: FakeSender,
    outcomes: Outcomes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = make_pipeline(workers=1)
    sender.errors["a1"] = [RuntimeError("bug")]

    with caplog.at_level(logging.ERROR, logger="intercom_sidecar.delivery.pipeline"):
        submit(pipeline, outcomes, "a", "a1")
        await outcomes.wait("a1")
        submit(pipeline, outcomes, "b", "b1")
        await outcomes.wait("b1")

    outcome = outcomes["a1"]
    assert isinstance(outcome, Rejected)
    assert type(outcome.error) is InternalError
    assert outcome.error.reason == "internal error (RuntimeError)", "not blamed on Intercom"
    assert (outcome.error.code, outcome.error.message) == ("internal", "internal error (RuntimeError)")
    assert outcomes["b1"] == Delivered(attempts=1)  # the one worker is still alive
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


async def test_a_failing_outcome_callback_does_not_stop_the_worker(
    make_pipeline: Callable[..., Pipeline], outcomes: Outcomes, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = make_pipeline(workers=1)

    def broken(outcome: Outcome) -> None:
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.ERROR, logger="intercom_sidecar.delivery.pipeline"):
        pipeline.submit("a", plan("a1"), broken)
        submit(pipeline, outcomes, "b", "b1")
        await outcomes.wait("b1")

    assert outcomes["b1"] == Delivered(attempts=1)  # the one worker survived the callback's failure
    assert [record.getMessage() for record in caplog.records] == [
        "Unexpected error while reporting a delivery outcome."
    ]


async def test_shutdown_drains_within_grace(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=2)
    gate = sender.gate("a1")
    submit(pipeline, outcomes, "a", "a1", "a2")
    submit(pipeline, outcomes, "b", "b1")
    await sender.wait_started("a1")

    stopping = asyncio.create_task(pipeline.shutdown(grace_seconds=60))
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDownError):
        submit(pipeline, outcomes, "c", "c1")  # draining: no new events
    gate.set()

    assert await stopping == 0
    assert {name: outcomes[name] for name in ("a1", "a2", "b1")} == dict.fromkeys(("a1", "a2", "b1"), Delivered(1))
    assert pipeline.depth == 0


async def test_shutdown_abandons_what_the_grace_does_not_cover(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=2)
    sender.gate("a1")  # never opened
    submit(pipeline, outcomes, "a", "a1", "a2", "a3")
    submit(pipeline, outcomes, "b", "b1")
    await outcomes.wait("b1")
    await sender.wait_started("a1")

    abandoned = await pipeline.shutdown(grace_seconds=0)

    assert abandoned == 3
    assert outcomes["b1"] == Delivered(attempts=1)
    assert outcomes["a1"] == STOPPED_DURING
    assert outcomes["a2"] == STOPPED_BEFORE
    assert outcomes["a3"] == STOPPED_BEFORE
    assert outcomes.order[-3:] == ["a1", "a2", "a3"]
    assert "a2" not in sender.started
    assert pipeline.depth == 0


class StuckClock(FakeClock):
    """A clock whose sleeps never end: a worker waiting on a backoff stays there until it is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()


async def test_shutdown_interrupts_a_retry_wait(sender: FakeSender, outcomes: Outcomes) -> None:
    clock = StuckClock()
    pipeline = Pipeline(sender, QueueConfig(workers=1), RETRY, clock=clock, rng=random.Random(1))
    pipeline.start()
    sender.errors["a1"] = [RetryableError("down", status=503)]
    submit(pipeline, outcomes, "a", "a1", "a2")
    await clock.sleeping.wait()

    abandoned = await pipeline.shutdown(grace_seconds=0)

    assert abandoned == 2
    assert outcomes["a1"] == STOPPED_DURING
    assert outcomes["a2"] == STOPPED_BEFORE
    assert sender.started == ["a1"]
    assert len(clock.sleeps) == 1


async def test_shutdown_cancels_an_attempt_in_flight(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=1)
    gate = sender.gate("a1")
    submit(pipeline, outcomes, "a", "a1")
    await sender.wait_started("a1")

    assert await pipeline.shutdown(grace_seconds=0) == 1
    assert outcomes["a1"] == STOPPED_DURING
    assert not gate.is_set()
    assert sender.sent == []


async def test_shutdown_is_idempotent_and_closes_intake(
    make_pipeline: Callable[..., Pipeline], outcomes: Outcomes
) -> None:
    pipeline = make_pipeline()
    assert await pipeline.shutdown(grace_seconds=1) == 0
    assert await pipeline.shutdown(grace_seconds=1) == 0
    with pytest.raises(ShuttingDownError):
        submit(pipeline, outcomes, "a", "a1")


async def test_shutdown_before_start_abandons_queued_plans(
    sender: FakeSender, outcomes: Outcomes, clock: FakeClock
) -> None:
    pipeline = Pipeline(sender, QueueConfig(workers=1), RETRY, clock=clock)
    submit(pipeline, outcomes, "a", "a1", "a2")
    submit(pipeline, outcomes, "b", "b1")

    assert await pipeline.shutdown(grace_seconds=0) == 3
    assert [outcomes[name] for name in ("a1", "a2", "b1")] == [STOPPED_BEFORE] * 3
    assert sender.started == []


async def test_a_refused_token_pauses_everyone_and_the_event_is_sent_after_resume(
    make_pipeline: Callable[..., Pipeline], sender: FakeSender, outcomes: Outcomes
) -> None:
    pipeline = make_pipeline(workers=2)
    changes: list[str | None] = []
    paused = asyncio.Event()

    def on_pause_change(reason: str | None) -> None:
        changes.append(reason)
        paused.set()

    pipeline.on_pause_change = on_pause_change
    sender.errors["a1"] = [UnauthorizedError("Access Token Invalid", status=401, code="unauthorized")]
    gate = sender.gate("b1")
    gate.set()

    submit(pipeline, outcomes, "a", "a1")
    await paused.wait()
    reason = "delivery is paused: intercom 401 unauthorized: Access Token Invalid"
    assert pipeline.pause_reason == reason
    submit(pipeline, outcomes, "b", "b1")
    with pytest.raises(TimeoutError):  # a negative check: the free worker takes nothing new while paused
        await asyncio.wait_for(sender.wait_started("b1"), timeout=0.05)

    pipeline.resume()
    await outcomes.wait("a1", "b1")
    assert outcomes["a1"] == Delivered(attempts=1), "sent again after the pause, not rejected"
    assert sorted(sender.sent) == ["a1", "b1"]
    assert changes == [reason, None]
