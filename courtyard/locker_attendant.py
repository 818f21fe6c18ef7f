"""The people at the demo's lockers: whoever a compartment opens for uses it, then shuts it.

In ``courtyard demo`` nobody stands at the simulated lock board, so a deposit would open a door
that never closes (the gateway would wait, then raise ``locker_left_open``) and a pickup would
leave the parcel inside. :class:`LockerAttendant` plays the courier and the resident: a door that
has stood open for ``after_s`` seconds is used the way its contents say — an empty compartment
gets a parcel, a full one is emptied — and shut. Doors marked ``leave_open`` on the board are left
alone (a scenario playing a forgetful person). It acts only through the board's person API, under
the :class:`~courtyard.community.Cabinet`'s lock, exactly as a test scenario does; the gateway
still sees nothing but hook and infrared bits on the wire.

End-to-end scenarios do not use it: they play the person themselves, step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from devices.lockboard import LockBoard


class _Cabinet(Protocol):
    """What :class:`~courtyard.community.Cabinet` offers: the board, held still."""

    def hands(self) -> contextlib.AbstractContextManager[LockBoard]: ...


class LockerAttendant:
    """Use and shut every compartment that stays open ``after_s`` seconds; see the module doc."""

    def __init__(self, cabinet: _Cabinet, *, after_s: float = 4.0, poll_s: float = 0.25) -> None:
        if not after_s > 0 or not poll_s > 0:
            raise ValueError("after_s and poll_s must be positive")
        self._cabinet = cabinet
        self._after_s = after_s
        self._poll_s = poll_s
        self._open_since: dict[int, float] = {}
        self.deposits = 0
        """Parcels put in so far."""
        self.pickups = 0
        """Parcels taken out so far."""

    def step(self, now: float) -> None:
        """Look at every door once at ``now`` (monotonic seconds) and act where it is time."""
        with self._cabinet.hands() as board:
            for lock in range(1, board.locks + 1):
                compartment = board.compartment(lock)
                if not compartment.door_open or compartment.left_open:
                    self._open_since.pop(lock, None)
                    continue
                since = self._open_since.setdefault(lock, now)
                if now - since < self._after_s:
                    continue
                if compartment.occupied:
                    board.take_parcel(lock)
                    self.pickups += 1
                else:
                    board.put_parcel(lock)
                    self.deposits += 1
                board.close_door(lock)
                del self._open_since[lock]

    async def run(self) -> None:
        """Step every ``poll_s`` seconds until cancelled."""
        while True:
            self.step(time.monotonic())
            await asyncio.sleep(self._poll_s)
