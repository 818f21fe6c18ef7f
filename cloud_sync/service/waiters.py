"""In-process wake-ups for long polls on a command's status.

``GET /api/v1/commands/{id}?wait=…`` must answer the moment ingest records the door's outcome, not
on the next tick of a polling loop. A waiter registers *before* it reads the command from the
database (so an update committed between the read and the wait still wakes it), then waits on an
:class:`asyncio.Event` that whoever changed the command sets *after* committing.

Events are per command id and shared by all waiters on it; :meth:`CommandWaiters.notify` pops and
sets them, so nothing accumulates for commands nobody watches. A notifier that knows what it
committed may hand that value over (``notify(ids, values)``): a waiter for which it is final
answers with it without reading the database again (terminal states absorb, so a final value
can never be stale); any other wake-up re-reads, so a notification skipped between a wake-up and
the re-arm is never missed.

With several service instances, ingest of a command's outcome may run on another instance than
the long poll; this instance then learns of it only when the waiter's slice times out and it
re-reads the database (every ``recheck_s``, one cheap query, only while someone waits). The plan
for scale-out is PostgreSQL ``LISTEN/NOTIFY`` on the command id feeding :meth:`notify`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

__all__ = ["CommandWaiters"]

T = TypeVar("T")


class _Wake(asyncio.Event):
    """An event that may carry the value its notifier committed."""

    value: Any = None


class CommandWaiters:
    """Wake-up events keyed by command id."""

    def __init__(self) -> None:
        self._events: dict[str, _Wake] = {}
        self._counts: dict[str, int] = {}
        #: How many times :meth:`notify` was called: a reader that notes it before reading a
        #: command knows its read is current as long as the count has not moved.
        self.notifications = 0

    @contextmanager
    def watch(self, command_id: str) -> Iterator[_Wake]:
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

    def rearm(self, command_id: str) -> _Wake:
        """The event for the next change of ``command_id`` (a fresh one after a wake-up)."""
        return self._event(command_id)

    def _event(self, command_id: str) -> _Wake:
        ev = self._events.get(command_id)
        if ev is None:
            ev = self._events[command_id] = _Wake()
        return ev

    def notify(self, command_ids: Iterable[str], values: Mapping[str, Any] | None = None) -> None:
        """Wake everyone waiting on any of ``command_ids`` (call after the change is committed).

        ``values`` may give, per id, the value a waiter's ``read`` would return now.
        """
        self.notifications += 1
        for cid in command_ids:
            ev = self._events.pop(cid, None)
            if ev is not None:
                if values is not None:
                    ev.value = values.get(cid)
                ev.set()

    async def wait_until(
        self,
        command_id: str,
        read: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        timeout_s: float,
        recheck_s: float = 1.0,
        known: tuple[T, int] | None = None,
    ) -> T:
        """Re-``read`` the command each time it changes until ``done`` or ``timeout_s`` passes.

        Returns the last value read. Wakes on :meth:`notify`; re-reads at least every
        ``recheck_s`` for changes made by another instance. A value handed over by the notifier
        is used instead of a read only when it is ``done``. ``known`` is a value the caller
        already read and the :attr:`notifications` count it noted BEFORE that read: if nothing
        was notified since, it is still current and the first read is skipped.
        """
        deadline = time.monotonic() + timeout_s
        with self.watch(command_id) as event:
            if known is not None and known[1] == self.notifications:
                value = known[0]
            else:
                value = await read()
            while True:
                remaining = deadline - time.monotonic()
                if done(value) or remaining <= 0:
                    return value
                with suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, recheck_s))
                given: T | None = event.value if event.is_set() else None
                if given is not None and done(given):
                    return given  # final: nothing can have changed it since
                # re-arm before the next read so a change committed in between still wakes us
                event = self.rearm(command_id)
                value = await read()

    def __len__(self) -> int:
        return len(self._counts)
