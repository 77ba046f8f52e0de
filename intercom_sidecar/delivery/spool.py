"""The spool: accepted events kept on local disk until Intercom has them or they are dead letters.

An ACCEPTED ack is a promise: the event reaches Intercom, or ends up with its reason among the dead letters,
where an operator can replay it. So the server appends an event to the spool, and acks only once `append`
has returned its seq (the write is durable by then).

    append() ─▶ pending ─complete()─▶ gone (delivered or filtered)
                 │  │
                 │  └─dead_letter()─▶ dead letters ─replay()─▶ pending again, with a new seq
                 │                          └──────purge()─▶ gone
                 └─quarantine()─▶ quarantine (a payload nobody can decode; kept for a human)

Two implementations share the `Spool` protocol: `SqliteSpool` (`spool_sqlite.py`, durable, the default) and
`MemorySpool` (`spool_memory.py`, for tests and users who accept losing queued events on a crash).

Secrets: a spool stores exactly the bytes it is given (pending events in clear; dead letters as
`INTERCOM_SIDECAR_DEAD_LETTER_PAYLOADS` says), in files readable by the sidecar's user only, that outlive the
process. Callers must never put access tokens, API keys or other credentials into a payload, a
user key or a dead-letter reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from intercom_sidecar.errors import QueueFullError, SidecarError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "DATABASE_NAME",
    "SCHEMA_VERSION",
    "Attempt",
    "DeadLetter",
    "DeadLetterFilter",
    "PendingLedger",
    "Recovery",
    "Spool",
    "SpoolEntry",
    "SpoolError",
    "SpooledEvent",
]

DATABASE_NAME = "spool.db"
"""The SQLite spool's database file in the spool directory (shared by `SqliteSpool` and `DeadLetterStore`)."""
SCHEMA_VERSION = 2
"""Its `PRAGMA user_version`; a database of a newer version is never written (version 1 is migrated: 2 added
`call_type` and `payload_form` to the dead letters)."""
BUSY_TIMEOUT_MS = 5000
"""How long a connection waits for another one's write transaction (the CLI's, or the sidecar's)."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One event to append. `payload` is opaque (a serialized event) and never holds secrets."""

    message_id: str
    user_key: str
    """The per-user FIFO key: user_id, else anonymous_id."""
    payload: bytes
    trace_id: str
    """32 hex characters."""
    accepted_at: float
    """Unix seconds."""


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """A pending event as the spool hands it back."""

    seq: int
    """Assigned by the spool, increasing, never reused: the acceptance order (and so per-user FIFO order)."""
    message_id: str
    user_key: str
    payload: bytes
    trace_id: str
    accepted_at: float
    attempts: int = 0
    """Attempts recorded with `record_attempt` (they survive a restart)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One recorded delivery attempt: when, and what came of it (`intercom 503: ...`)."""

    at: float
    outcome: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event given up on, with everything an operator needs to judge and replay it."""

    seq: int
    """The seq it had while pending; the dead letter's id."""
    message_id: str
    user_key: str
    payload: bytes
    trace_id: str
    accepted_at: float
    dead_at: float
    reason: str
    status: int | None
    """Intercom's HTTP status, None when it never answered."""
    code: str
    attempts: int
    outcomes: tuple[Attempt, ...]
    """Every attempt recorded with `record_attempt`, oldest first."""
    call_type: str = ""
    """identify, track, ...: kept in clear whatever becomes of the payload; empty when not recorded."""
    payload_form: str = "kept"
    """How `payload` is stored: `kept` (as accepted), `dropped` (empty) or `aes256gcm` (see dead_letter_payloads)."""

    @property
    def replayable(self) -> bool:
        return self.payload_form != "dropped"


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead letters to list or purge; every field given must match. The empty filter matches all."""

    since: float | None = None
    """Dead at or after this (unix seconds)."""
    until: float | None = None
    """Dead before this (unix seconds)."""
    reason: str | None = None
    """A substring of the reason, ASCII case-insensitive."""
    user_key: str | None = None
    message_id: str | None = None
    after_seq: int | None = None
    """Only dead letters with a larger seq: a cursor for reading them page by page."""
    message_ids: tuple[str, ...] | None = None
    """Any of these message ids."""

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.after_seq is None or letter.seq > self.after_seq)
            and (self.message_ids is None or letter.message_id in self.message_ids)
            and (self.since is None or letter.dead_at >= self.since)
            and (self.until is None or letter.dead_at < self.until)
            and (self.reason is None or _ascii_lower(self.reason) in _ascii_lower(letter.reason))
            and (self.user_key is None or letter.user_key == self.user_key)
            and (self.message_id is None or letter.message_id == self.message_id)
        )


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `open()` found. Counts only: the pending events themselves are read in windows (`read_pending`), so
    a backlog of millions never has to fit in memory at once."""

    pending_events: int = 0
    """Events not yet completed, dead-lettered or quarantined."""
    pending_bytes: int = 0
    """Their payload bytes."""
    quarantined: int = 0
    """Events in the quarantine table (moved there by `quarantine`), waiting for a human."""
    moved_aside: tuple[Path, ...] = ()
    """Database files that failed to open or to pass `PRAGMA quick_check`, renamed aside (spool.corrupt-*.db)."""
    dead_letters: int = 0
    """Dead letters waiting for an operator."""


class SpoolError(SidecarError):
    """The spool cannot be used or written: its directory is not writable, another sidecar holds it, or a
    write failed. The message names the directory. An append that raises it was not stored: ack RETRY_LATER."""


class Spool(Protocol):
    """Where accepted events live until they are delivered or dead letters. Used from one event loop.

    `append` returns only once its entries are durable (a group commit shared with concurrent callers).
    `complete`, `record_attempt`, `dead_letter` and `quarantine` are plain methods: they queue their change for
    the next group commit without waiting for it (the bounds follow once it has committed; `sync` waits for
    that), so they can be called from a synchronous `done` callback and cannot be lost to a forgotten `await`.
    A crash before that commit undoes them: the event is recovered and delivered again (Intercom dedupes data
    events by created_at), never lost.
    """

    async def open(self) -> Recovery:
        """Create or recover the spool; raises SpoolError for a directory it cannot use (never for corruption)."""
        ...

    async def append(self, entries: Sequence[SpoolEntry]) -> list[int | None]:
        """Store `entries`; the seq of each, or None for a duplicate message_id (seen within the dedupe window).

        All or nothing: raises QueueFullError when the batch would cross the events or bytes bound (so a batch
        larger than a bound is never taken), SpoolError when the write failed, ShuttingDownError after `close`.
        """
        ...

    async def read_pending(self, after_seq: int, limit: int) -> list[SpooledEvent]:
        """Pending events with a seq above `after_seq`, in seq order, at most `limit`. Events handed out here are
        never also handed out by `collect_replayed`."""
        ...

    async def seen(self, message_ids: Sequence[str]) -> set[str]:
        """Those of `message_ids` accepted within the dedupe window: an append would answer them as duplicates."""
        ...

    def complete(self, seqs: Sequence[int]) -> None:
        """The events were delivered or filtered: forget them."""
        ...

    def record_attempt(self, seq: int, outcome: str) -> None:
        """Count one failed attempt and remember its outcome (for the dead letter, should it come to that)."""
        ...

    def dead_letter(self, seq: int, *, reason: str, status: int | None, code: str, attempts: int) -> None:
        """Give up on a pending event: move it, with its reason and recorded attempts, to the dead letters."""
        ...

    def quarantine(self, seq: int, reason: str) -> None:
        """Move aside a pending event whose payload cannot be decoded."""
        ...

    def depth(self) -> tuple[int, int]:
        """Pending events and their payload bytes (a delete counts once it has committed)."""
        ...

    async def sync(self) -> None:
        """Wait until every change queued so far (`complete`, `dead_letter`, ...) has committed."""
        ...

    def room(self) -> tuple[int, int]:
        """Events and payload bytes an append could still take now."""
        ...

    async def close(self) -> None:
        """Write what is queued and release the spool. Idempotent; later calls raise ShuttingDownError."""
        ...

    async def list_dead_letters(self, where: DeadLetterFilter | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters matching `where` (all when None), in seq order, at most `limit`."""
        ...

    async def get_dead_letter(self, message_id: str) -> DeadLetter | None:
        """The latest dead letter of `message_id`, if any."""
        ...

    async def replay(self, seqs: Sequence[int]) -> list[SpooledEvent]:
        """Move dead letters back to pending, after every pending event (new seqs, attempts reset to 0).

        Returns the new pending events, for the caller to queue; unknown seqs are skipped. Ignores the bounds.
        """
        ...

    async def purge(self, where: DeadLetterFilter) -> int:
        """Delete the dead letters matching `where`; how many were deleted."""
        ...

    async def collect_replayed(self) -> list[SpooledEvent]:
        """Events another process (the operator CLI) replayed since `open` or the last call, for the caller to queue;
        a bounded number at a time (call again until it returns none)."""
        ...


class PendingLedger:
    """The bounds, kept on the event loop: pending events and their bytes, plus appends not yet committed.

    Totals only, so memory stays flat whatever the backlog: the spool reports what each commit added (`add`) and
    what each delete freed (`free`)."""

    def __init__(self, *, max_events: int, max_bytes: int, full_retry_after: float) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._full_retry_after = full_retry_after
        self._events = 0
        self._bytes = 0
        self._reserved_events = 0
        self._reserved_bytes = 0

    def depth(self) -> tuple[int, int]:
        return self._events, self._bytes

    def room(self) -> tuple[int, int]:
        """Events and bytes an append could still take now (appends waiting for their commit count as taken)."""
        return (
            self._max_events - self._events - self._reserved_events,
            self._max_bytes - self._bytes - self._reserved_bytes,
        )

    def reserve(self, entries: Sequence[SpoolEntry]) -> int:
        """Hold room for `entries` until `release`; returns their bytes. Raises QueueFullError, holding nothing."""
        events = len(entries)
        size = sum(len(entry.payload) for entry in entries)
        taken_events = self._events + self._reserved_events
        taken_bytes = self._bytes + self._reserved_bytes
        if taken_events + events > self._max_events or taken_bytes + size > self._max_bytes:
            raise QueueFullError(
                f"the spool is full ({taken_events} of {self._max_events} events, "
                f"{taken_bytes} of {self._max_bytes} bytes)",
                retry_after=self._full_retry_after,
            )
        self._reserved_events += events
        self._reserved_bytes += size
        return size

    def release(self, events: int, size: int) -> None:
        self._reserved_events -= events
        self._reserved_bytes -= size

    def add(self, events: int, size: int) -> None:
        self._events += events
        self._bytes += size

    def free(self, events: int, size: int) -> None:
        self._events -= events
        self._bytes -= size


def _ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as SQLite's lower() does, so both spools filter alike."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
