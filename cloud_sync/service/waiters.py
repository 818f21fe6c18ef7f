"""In-process wake-ups for long polls on a command's status.

``GET /api/v1/commands/{id}?wait=…`` must answer the moment ingest records the door's outcome, not
on the next tick of a polling loop. A waiter registers *before* it reads the command from the
database (so an update committed between the read and the wait still wakes it), then waits on an
:class:`asyncio.Event` that whoever changed the command sets *after* committing.

Events are per command id and shared by all waiters on it; :meth:`CommandWaiters.notify` pops and
sets them, so nothing accumulates for commands nobody watches.

With several service instances, ingest of a command's outcome may run on another instance than
the long poll; this instance then learns of it only when the waiter's slice times out and it
re-reads the database (every ``recheck_s``, one cheap query, only while someone waits). The plan
for scale-out is PostgreSQL ``LISTEN/NOTIFY`` on the command id feeding :meth:`notify`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

__all__ = ["CommandWaiters"]

T = TypeVar("T")


class CommandWaiters:
    """Wake-up events keyed by command id."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._counts: dict[str, int] = {}

    @contextmanager
    def watch(self, command_id: str) -> Iterator[asyncio.Event]:
        """Register interest in ``command_id`` for the duration of the block.

        The yielded event is set when the command changes; after handling a wake-up, call
        :meth:`rearm` to get the event for the next change.
        """
        self._counts[command_id] = self._counts.get(command_id, 0) + 1
        try:
            yield self._event(command_id)
        finally:
            left = self._counts[command_id] - 1
            if left:
                self._counts[command_id] = left
            else:
                del self._counts[command_id]
                self._events.pop(command_id, None)

    def rearm(self, command_id: str) -> asyncio.Event:
        """The event for the next change of ``command_id`` (a fresh one after a wake-up)."""
        return self._event(command_id)

    def _event(self, command_id: str) -> asyncio.Event:
        ev = self._events.get(command_id)
        if ev is None:
            ev = self._events[command_id] = asyncio.Event()
        return ev

    def notify(self, command_ids: Iterable[str]) -> None:
        """Wake everyone waiting on any of ``command_ids`` (call after the change is committed)."""
        for cid in command_ids:
            ev = self._events.pop(cid, None)
            if ev is not None:
                ev.set()

    async def wait_until(
        self,
        command_id: str,
        read: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        timeout_s: float,
        recheck_s: float = 1.0,
    ) -> T:
        """Re-``read`` the command each time it changes until ``done`` or ``timeout_s`` passes.

        Returns the last value read. Wakes on :meth:`notify`; re-reads at least every
        ``recheck_s`` for changes made by another instance.
        """
        deadline = time.monotonic() + timeout_s
        with self.watch(command_id) as event:
            while True:
                value = await read()
                remaining = deadline - time.monotonic()
                if done(value) or remaining <= 0:
                    return value
                with suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, recheck_s))
                # re-arm before the next read so a change committed in between still wakes us
                event = self.rearm(command_id)

    def __len__(self) -> int:
        return len(self._counts)
