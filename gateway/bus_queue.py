"""The bus owner's queue: priority first, FIFO within a priority, retries that wait their turn.

A plain :class:`asyncio.PriorityQueue` is not enough for two reasons. A retry must back off
without holding the line (a locker command arriving meanwhile goes first), so jobs can carry a
"not before" time and sit aside until then. And jobs whose deadline passes while the bus is down
must be failed, not served late, so the queue can be swept.

A retried job keeps the sequence number it was first queued with: once its back-off is over it is
ahead of everything of its priority that arrived after it, as if it had never left.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.bus_exchange import Exchange, Outcome

__all__ = ["BusQueue", "Job"]


@dataclass(slots=True)
class Job:
    """An exchange waiting on a bus, with the future its submitter awaits."""

    exchange: Exchange
    future: asyncio.Future[Outcome]
    seq: int = 0
    attempts: int = 0
    not_before: float = 0.0
    latency_s: float = 0.0
    queued_at: float = field(default=0.0)

    @property
    def key(self) -> tuple[int, int]:
        """Ordering: priority, then arrival."""
        return (int(self.exchange.priority), self.seq)


class BusQueue:
    """Jobs ready to run (by priority and arrival) and jobs backing off (by time)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._ready: list[tuple[tuple[int, int], Job]] = []
        self._waiting: list[tuple[float, int, Job]] = []
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ready) + len(self._waiting)

    def put(self, job: Job) -> None:
        """Queue a new job (it gets its arrival number) or a retry (it keeps it)."""
        if job.seq == 0:
            job.seq = next(self._seq)
            job.queued_at = self._clock()
        if job.not_before > self._clock():
            heapq.heappush(self._waiting, (job.not_before, job.seq, job))
        else:
            heapq.heappush(self._ready, (job.key, job))
        self._changed.set()

    async def get(self) -> Job:
        """The next job to run: the highest priority among those not backing off."""
        while True:
            self._promote()
            while self._ready:
                _, job = heapq.heappop(self._ready)
                if not job.future.done():  # a submitter that gave up cancelled its future
                    return job
            self._changed.clear()
            timeout = self._waiting[0][0] - self._clock() if self._waiting else None
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def expire(self, now: float, fail: Callable[[Job], None]) -> None:
        """Take out every job whose deadline is before ``now`` and hand it to ``fail``."""

        def live(job: Job) -> bool:
            deadline = job.exchange.deadline
            if job.future.done():
                return False
            if deadline is not None and deadline < now:
                fail(job)
                return False
            return True

        self._ready = [entry for entry in self._ready if live(entry[1])]
        heapq.heapify(self._ready)
        self._waiting = [entry for entry in self._waiting if live(entry[2])]
        heapq.heapify(self._waiting)

    def drain(self) -> list[Job]:
        """Take out every job (the owner is stopping)."""
        jobs = [job for _, job in self._ready] + [job for _, _, job in self._waiting]
        self._ready.clear()
        self._waiting.clear()
        return jobs

    def _promote(self) -> None:
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, job = heapq.heappop(self._waiting)
            heapq.heappush(self._ready, (job.key, job))
