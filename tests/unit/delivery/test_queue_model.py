"""SendQueue against a simple model (Hypothesis stateful): the bound, closing, one item in flight per key, per-key
FIFO, and that order surviving a crash or a stop followed by a restart that re-queues what the spool still holds.

The model is the sidecar's use of the queue: every accepted item is durable ("pending") until it is finished
(delivered or dead-lettered); a crash drops the in-memory queue; a graceful stop abandons what is in flight and
drains what is queued (as `Pipeline.shutdown` does once its grace has run out), leaving both pending; a restart puts
every pending item back in acceptance order with `bounded=False`, as recovery from the spool does.
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from intercom_sidecar.delivery.queue import SendQueue
from intercom_sidecar.errors import QueueFullError, ShuttingDownError

pytestmark = pytest.mark.timeout(30)

KEYS = ("a", "b", "c", "d")
RETRY_AFTER = 2.5


async def _new_queue(max_items: int) -> SendQueue[int]:
    # Built inside a running loop, as the pipeline builds it; only the synchronous methods are used afterwards.
    return SendQueue(max_items, full_retry_after=RETRY_AFTER)


class SendQueueModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.queue: SendQueue[int] | None = None
        """The queue of the running process; None between a crash (or a stop) and the restart."""
        self.max_items = 0
        self.next_item = 0
        """Items are numbered in acceptance order: item n was accepted before item n + 1."""
        self.pending: dict[int, str] = {}
        """The spool: every accepted item not yet finished, with its key, in acceptance order."""
        self.waiting: dict[str, deque[int]] = {}
        """This process's queue: per key, the items put and not yet handed out."""
        self.in_flight: dict[str, int] = {}
        """This process's queue: per key, the item handed out and not yet finished."""
        self.closed = False
        self.finished: dict[str, list[int]] = {key: [] for key in KEYS}
        """Per key, the items finished (delivered or dead-lettered), in the order they finished, across restarts."""

    def teardown(self) -> None:
        self.loop.close()

    # helpers ----------------------------------------------------------------------------------------------

    def _start_queue(self) -> SendQueue[int]:
        self.queue = self.loop.run_until_complete(_new_queue(self.max_items))
        self.waiting = {}
        self.in_flight = {}
        self.closed = False
        return self.queue

    def _unfinished(self) -> int:
        return sum(map(len, self.waiting.values())) + len(self.in_flight)

    def _ready_keys(self) -> set[str]:
        return {key for key, items in self.waiting.items() if items and key not in self.in_flight}

    def _oldest_pending(self, key: str) -> int:
        return min(item for item, owner in self.pending.items() if owner == key)

    def _hand_out(self, queue: SendQueue[int]) -> tuple[str, int] | None:
        """`get_nowait`, checked against the model: None when the model says nothing is ready."""
        ready = self._ready_keys()
        try:
            key, item = queue.get_nowait()
        except LookupError:
            assert not ready, f"nothing handed out although {sorted(ready)} have an item ready"
            return None
        assert key not in self.in_flight, (
            f"a second item of {key!r} handed out while {self.in_flight[key]} is in flight"
        )
        assert key in ready, f"{key!r} handed out but it has nothing waiting"
        assert item == self.waiting[key][0], f"{key!r}: handed out {item}, the oldest waiting is {self.waiting[key][0]}"
        self.waiting[key].popleft()
        self.in_flight[key] = item
        return key, item

    # rules ------------------------------------------------------------------------------------------------

    @initialize(max_items=st.integers(min_value=1, max_value=6))
    def start(self, max_items: int) -> None:
        self.max_items = max_items
        self._start_queue()

    @precondition(lambda self: self.queue is not None)
    @rule(key=st.sampled_from(KEYS), bounded=st.booleans())
    def put(self, key: str, bounded: bool) -> None:
        assert self.queue is not None
        item = self.next_item
        if self.closed:
            with pytest.raises(ShuttingDownError):
                self.queue.put(key, item, bounded=bounded)
            return
        if bounded and self._unfinished() >= self.max_items:
            with pytest.raises(QueueFullError) as refused:
                self.queue.put(key, item, bounded=bounded)
            assert refused.value.retry_after == RETRY_AFTER
            return
        self.queue.put(key, item, bounded=bounded)
        self.next_item += 1
        self.pending[item] = key
        self.waiting.setdefault(key, deque()).append(item)

    @precondition(lambda self: self.queue is not None)
    @rule()
    def take(self) -> None:
        assert self.queue is not None
        handed = self._hand_out(self.queue)
        if handed is not None:
            key, item = handed
            # Across restarts too: what a key hands out is its oldest item not finished yet.
            assert item == self._oldest_pending(key), f"{key!r}: handed out {item} before {self._oldest_pending(key)}"

    @precondition(lambda self: self.queue is not None and self.in_flight)
    @rule(data=st.data(), outcome=st.sampled_from(["delivered", "dead-lettered"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        """The item in flight for a key is delivered or dead-lettered: no longer pending, and its key moves on."""
        assert self.queue is not None
        key = data.draw(st.sampled_from(sorted(self.in_flight)), label="key")
        item = self.in_flight.pop(key)
        self.queue.task_done(key)
        del self.pending[item]
        self.finished[key].append(item)

    @precondition(lambda self: self.queue is not None)
    @rule()
    def close(self) -> None:
        assert self.queue is not None
        self.queue.close()
        self.closed = True
        assert self.queue.closed

    @precondition(lambda self: self.queue is not None)
    @rule()
    def crash(self) -> None:
        """kill -9: the in-memory queue is gone; what is pending in the spool stays."""
        self.queue = None
        self.waiting = {}
        self.in_flight = {}

    @precondition(lambda self: self.queue is not None)
    @rule()
    def stop(self) -> None:
        """A stop whose grace ran out: close, abandon what is in flight, then hand out and abandon the rest."""
        queue = self.queue
        assert queue is not None
        queue.close()
        self.closed = True
        for key in sorted(self.in_flight):
            del self.in_flight[key]
            queue.task_done(key)  # abandoned: still pending
        while (handed := self._hand_out(queue)) is not None:
            key, _ = handed
            del self.in_flight[key]
            queue.task_done(key)  # abandoned: still pending
        assert len(queue) == 0
        assert not any(self.waiting.values()), f"left in the stopped queue: {self.waiting}"
        self.queue = None
        self.waiting = {}

    @precondition(lambda self: self.queue is None)
    @rule()
    def restart(self) -> None:
        """Recovery: every pending item back in the queue, in acceptance order, never refused by the bound."""
        queue = self._start_queue()
        for item, key in self.pending.items():
            queue.put(key, item, bounded=False)
            self.waiting.setdefault(key, deque()).append(item)

    # invariants -------------------------------------------------------------------------------------------

    @invariant()
    def length_is_the_unfinished_count(self) -> None:
        if self.queue is not None:
            assert len(self.queue) == self._unfinished()

    @invariant()
    def at_most_one_item_in_flight_per_key(self) -> None:
        in_flight_items = list(self.in_flight.values())
        assert len(in_flight_items) == len(set(in_flight_items))
        for key, item in self.in_flight.items():
            assert self.pending[item] == key
            assert all(item < waiting for waiting in self.waiting.get(key, ())), f"{key!r}: FIFO broken"

    @invariant()
    def each_key_finishes_in_acceptance_order(self) -> None:
        for key, items in self.finished.items():
            assert items == sorted(items), f"{key!r} finished out of order: {items}"
            assert len(items) == len(set(items)), f"{key!r} finished an item twice: {items}"

    @invariant()
    def the_queue_holds_exactly_the_pending_items(self) -> None:
        if self.queue is not None:
            # Everything pending is in the running process's queue: accepted there, or put back by the restart.
            held = sorted([*self.in_flight.values(), *(item for items in self.waiting.values() for item in items)])
            assert held == sorted(self.pending)


SendQueueModel.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None, database=None)
TestSendQueueModel = SendQueueModel.TestCase
