"""The operator's reconcile workers: a fixed number of slots, changes before refreshes.

controller-runtime's ``MaxConcurrentReconciles`` bounds how many reconciles talk to Temporal
at once. Muster adds what controller-runtime's priority queue adds: work somebody asked for
(create, update, trigger, delete) goes before the periodic resyncs, so a burst of
``kubectl apply`` is not slowed by status refreshes of resources nobody touched. Each class
waits in FIFO order; a refresh waits only while changes are waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class Workers:
    """``size`` reconcile slots; urgent waiters are served before the others."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"workers need at least one slot, got {size}")
        self.size = size
        self.busy = 0
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._later: deque[asyncio.Future[None]] = deque()

    def waiting(self, *, urgent: bool) -> int:
        """How many reconciles of a class wait for a slot."""
        return sum(not f.done() for f in (self._urgent if urgent else self._later))

    async def acquire(self, *, urgent: bool) -> None:
        """Take a slot, waiting behind every urgent waiter (and, if not urgent, every other)."""
        queue = self._urgent if urgent else self._later
        if self.busy < self.size and not self._urgent and (urgent or not self._later):
            self.busy += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(future)
            raise

    def release(self) -> None:
        """Give the slot to the next waiter (urgent first), or free it."""
        for queue in (self._urgent, self._later):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # the slot moves to the waiter: busy unchanged
                    return
        self.busy -= 1

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool) -> AsyncIterator[None]:
        """Hold one slot for the body of the ``async with``."""
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()
