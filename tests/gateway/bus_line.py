"""A gateway bus owner running on a simulated line, for the bus and driver tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from devices.serialbus import BusServer, BusStats
from gateway.bus import BusOwner
from gateway.bus_stats import DeviceSnapshot
from gateway.meters import MeterReader, Reading
from gateway.settings import BusSettings, MeterSettings

WAIT_S = 10.0


class Line:
    """A bus owner running on a simulated line, with what it reported."""

    def __init__(self, settings: BusSettings, gap_s: float = 0.003) -> None:
        self.transitions: list[tuple[str, bool | None]] = []
        self.readings: list[Reading] = []
        self.owner = BusOwner(settings, gap_s=gap_s, on_transition=self._transition)
        self._task: asyncio.Task[None] | None = None

    def _transition(self, snapshot: DeviceSnapshot) -> None:
        self.transitions.append((snapshot.device, snapshot.online))

    def reader(self, meters: list[MeterSettings]) -> MeterReader:
        return MeterReader(meters, {self.owner.name: self.owner}, self.readings.append)

    def start(self) -> None:
        self._task = asyncio.create_task(self.owner.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task
        await self.owner.close()


async def wait_stats(server: BusServer, predicate: Callable[[BusStats], bool]) -> BusStats:
    """The simulator's statistics once ``predicate`` holds (its own thread waits)."""
    return await asyncio.to_thread(server.wait_for, predicate, WAIT_S)
