"""`MemorySpool`: the `Spool` interface in memory (`INTERCOM_SIDECAR_SPOOL=memory`).

Same bounds, dedupe window and dead letters as `SqliteSpool`, but nothing survives the process: a crash or a
restart loses every pending event, every dead letter and the dedupe memory, even though each was acked ACCEPTED.
For tests, and for users who accept that risk. The dedupe memory holds one entry per message id seen within the
window (about 100 bytes each), so a long window at a high rate costs memory.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from intercom_sidecar.delivery.spool import (
    Attempt,
    DeadLetter,
    DeadLetterFilter,
    PendingLedger,
    Recovery,
    SpooledEvent,
    SpoolEntry,
    SpoolError,
)
from intercom_sidecar.errors import ShuttingDownError
from intercom_sidecar.model.call_type import call_type_of

__all__ = ["MemorySpool"]


@dataclass(slots=True)
class _Pending:
    event: SpooledEvent
    outcomes: list[Attempt] = field(default_factory=list)


class MemorySpool:
    """The `Spool` in memory; no durability. Bounds count pending events and their payload bytes."""

    def __init__(
        self,
        *,
        max_events: int,
        max_bytes: int,
        dedupe_window_seconds: float = 86400.0,
        full_retry_after_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._window = dedupe_window_seconds
        self._clock = clock
        self._ledger = PendingLedger(
            max_events=max_events, max_bytes=max_bytes, full_retry_after=full_retry_after_seconds
        )
        self._pending: dict[int, _Pending] = {}
        self._dead: dict[int, DeadLetter] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()
        """Message id -> when it was accepted, oldest first."""
        self._last_seq = 0
        self._state = "new"

    async def open(self) -> Recovery:
        if self._state != "new":
            raise SpoolError("the memory spool was already opened")
        self._state = "open"
        return Recovery()

    async def append(self, entries: Sequence[SpoolEntry]) -> list[int | None]:
        self._check_open()
        if not entries:
            return []
        size = self._ledger.reserve(entries)
        self._ledger.release(len(entries), size)
        now = self._clock()
        cutoff = now - self._window
        while self._seen and next(iter(self._seen.values())) < cutoff:
            self._seen.popitem(last=False)
        seqs: list[int | None] = []
        for entry in entries:
            seen_at = self._seen.get(entry.message_id)
            if seen_at is not None and seen_at >= cutoff:
                seqs.append(None)
                continue
            self._seen[entry.message_id] = now
            self._seen.move_to_end(entry.message_id)
            event = self._push(entry.message_id, entry.user_key, entry.payload, entry.trace_id, entry.accepted_at)
            seqs.append(event.seq)
        return seqs

    async def read_pending(self, after_seq: int, limit: int) -> list[SpooledEvent]:
        self._check_open()
        # Seq order is insertion order; what lies below `after_seq` is the delivery window, so this stays short.
        found = itertools.dropwhile(lambda pending: pending.event.seq <= after_seq, self._pending.values())
        return [pending.event for pending in itertools.islice(found, limit)]

    async def seen(self, message_ids: Sequence[str]) -> set[str]:
        self._check_open()
        cutoff = self._clock() - self._window
        return {message_id for message_id in message_ids if self._seen.get(message_id, -math.inf) >= cutoff}

    def complete(self, seqs: Sequence[int]) -> None:
        self._check_open()
        for seq in seqs:
            self._pop(seq)

    def record_attempt(self, seq: int, outcome: str) -> None:
        self._check_open()
        pending = self._pending.get(seq)
        if pending is not None:
            pending.outcomes.append(Attempt(self._clock(), outcome))
            pending.event = replace(pending.event, attempts=pending.event.attempts + 1)

    def dead_letter(self, seq: int, *, reason: str, status: int | None, code: str, attempts: int) -> None:
        self._check_open()
        pending = self._pop(seq)
        if pending is None:
            return
        event = pending.event
        self._dead[seq] = DeadLetter(
            seq=seq,
            message_id=event.message_id,
            user_key=event.user_key,
            payload=event.payload,
            trace_id=event.trace_id,
            accepted_at=event.accepted_at,
            dead_at=self._clock(),
            reason=reason,
            status=status,
            code=code,
            attempts=attempts,
            outcomes=tuple(pending.outcomes),
            call_type=call_type_of(event.payload),
        )

    def quarantine(self, seq: int, reason: str) -> None:
        """Drops the event: the memory spool has nowhere to keep it for a human."""
        self._check_open()
        self._pop(seq)

    def depth(self) -> tuple[int, int]:
        return self._ledger.depth()

    async def sync(self) -> None:
        """Nothing to wait for: every change is made at once."""
        self._check_open()

    def room(self) -> tuple[int, int]:
        return self._ledger.room()

    async def close(self) -> None:
        self._state = "closed"

    async def list_dead_letters(self, where: DeadLetterFilter | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        self._check_open()
        where = where or DeadLetterFilter()
        return [letter for letter in sorted(self._dead.values(), key=_seq) if where.matches(letter)][:limit]

    async def get_dead_letter(self, message_id: str) -> DeadLetter | None:
        self._check_open()
        found = [letter for letter in self._dead.values() if letter.message_id == message_id]
        return max(found, key=_seq, default=None)

    async def replay(self, seqs: Sequence[int]) -> list[SpooledEvent]:
        self._check_open()
        events = []
        for seq in sorted(set(seqs)):
            letter = self._dead.pop(seq, None)
            if letter is not None:
                events.append(
                    self._push(letter.message_id, letter.user_key, letter.payload, letter.trace_id, letter.accepted_at)
                )
        return events

    async def purge(self, where: DeadLetterFilter) -> int:
        self._check_open()
        doomed = [seq for seq, letter in self._dead.items() if where.matches(letter)]
        for seq in doomed:
            del self._dead[seq]
        return len(doomed)

    async def collect_replayed(self) -> list[SpooledEvent]:
        """Always empty: no other process can reach a memory spool."""
        self._check_open()
        return []

    def _push(self, message_id: str, user_key: str, payload: bytes, trace_id: str, accepted_at: float) -> SpooledEvent:
        self._last_seq += 1
        event = SpooledEvent(self._last_seq, message_id, user_key, payload, trace_id, accepted_at)
        self._pending[event.seq] = _Pending(event)
        self._ledger.add(1, len(payload))
        return event

    def _pop(self, seq: int) -> _Pending | None:
        pending = self._pending.pop(seq, None)
        if pending is not None:
            self._ledger.free(1, len(pending.event.payload))
        return pending

    def _check_open(self) -> None:
        if self._state == "closed":
            raise ShuttingDownError()
        if self._state == "new":
            raise SpoolError("the memory spool is not open")


def _seq(letter: DeadLetter) -> int:
    return letter.seq
