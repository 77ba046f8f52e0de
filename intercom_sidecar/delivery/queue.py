"""A bounded send queue with per-key FIFO order and no head-of-line blocking across keys.

Items of one key (one user) are handed out one at a time, in the order they were put: the next item of a key
is released only when `task_done(key)` reports the previous one finished. Items of other keys are not held up
by a key whose item is slow or waiting on a retry. The bound counts every item not yet finished.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from intercom_sidecar.errors import QueueFullError, ShuttingDownError

__all__ = ["SendQueue"]

_T = TypeVar("_T")


class SendQueue(Generic[_T]):
    def __init__(self, max_items: int, *, full_retry_after: float) -> None:
        self._max_items = max_items
        self._full_retry_after = full_retry_after
        self._lanes: dict[str, deque[_T]] = {}
        """Per key, the items not yet handed out. A key has a lane while it has items or one in flight."""
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        """Keys whose next item may be handed out now; each key is in here at most once."""
        self._unfinished = 0
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        """Items put and not yet finished (queued or in flight)."""
        return self._unfinished

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, key: str, item: _T, *, bounded: bool = True) -> None:
        """Queue `item` behind the earlier items of `key`. Raises QueueFullError (unless not `bounded`: items
        that are already stored elsewhere, such as a recovered spool, are never refused) or ShuttingDownError."""
        if self._closed:
            raise ShuttingDownError()
        if bounded and self._unfinished >= self._max_items:
            raise QueueFullError(
                f"the send queue is full ({self._max_items} events)", retry_after=self._full_retry_after
            )
        self._unfinished += 1
        self._idle.clear()
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = deque((item,))
            self._ready.put_nowait(key)
        else:
            lane.append(item)

    async def get(self) -> tuple[str, _T]:
        """Wait for the next item of some ready key. Report it finished with `task_done(key)`."""
        key = await self._ready.get()
        return key, self._lanes[key].popleft()

    def get_nowait(self) -> tuple[str, _T]:
        """The next ready item, or LookupError when none is ready now."""
        try:
            key = self._ready.get_nowait()
        except asyncio.QueueEmpty:
            raise LookupError("no item is ready") from None
        return key, self._lanes[key].popleft()

    def task_done(self, key: str) -> None:
        """The item last handed out for `key` is finished; release the key's next item, if any."""
        self._unfinished -= 1
        if self._lanes[key]:
            self._ready.put_nowait(key)
        else:
            del self._lanes[key]
        if self._unfinished == 0:
            self._idle.set()

    def close(self) -> None:
        """Refuse new items from now on; what is queued can still be taken."""
        self._closed = True

    async def wait_idle(self) -> None:
        """Return once every item put has been finished."""
        await self._idle.wait()
