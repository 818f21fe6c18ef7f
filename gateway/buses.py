"""The site's RS-485 buses, wired: owners, meter schedules, lockers, events, health, metrics.

:class:`Buses` is what :class:`~gateway.daemon.Gateway` holds for the serial side. It builds one
:class:`~gateway.bus.BusOwner` per configured bus (gap from the protocols on it), the
:class:`~gateway.meters.MeterReader` and :class:`~gateway.lockers.Lockers` on top, and turns what
they report into outbox events, each in a transaction of its own:

* ``device.online`` ``{"device", "bus", "online"}`` once per transition of a meter or lock board;
* ``meter.reading`` ``{"meter", "bus", "values", "read_at"}`` for every reading.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.bus import BusOwner
from gateway.bus_stats import DeviceSnapshot
from gateway.drivers import bus_gap_s
from gateway.lockers import Lockers
from gateway.meters import METER_READING, MeterReader, Reading
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.settings import GatewaySettings
from gateway.store import Store

__all__ = ["DEVICE_ONLINE", "Buses"]

DEVICE_ONLINE = "device.online"


def _observe(metrics: GatewayMetrics, bus: str, device: str, seconds: float) -> None:
    metrics.bus_latency.labels(bus, device).observe(seconds)


class Buses:
    """Every bus of one gateway and the services that use them."""

    def __init__(
        self, settings: GatewaySettings, store: Store, outbox: Outbox, metrics: GatewayMetrics
    ) -> None:
        self._store = store
        self._outbox = outbox
        protocols: dict[str, list[str]] = {bus.name: [] for bus in settings.buses}
        for meter in settings.meters:
            protocols[meter.bus].append(meter.protocol)
        for board in settings.lockboards:
            protocols[board.bus].append("lockboard")
        self.owners = {
            bus.name: BusOwner(
                bus,
                gap_s=bus_gap_s(bus, protocols[bus.name]),
                on_transition=self._transition,
                observe_latency=functools.partial(_observe, metrics, bus.name),
            )
            for bus in settings.buses
        }
        self.meters = MeterReader(settings.meters, self.owners, self._record)
        self.lockers = Lockers(settings.lockboards, self.owners)
        metrics.watch_buses(self.devices, self.ports)

    def tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """The long-lived tasks to supervise: one owner per bus, one schedule per metered bus."""
        tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"bus:{name}", owner.run) for name, owner in self.owners.items()
        ]
        for name in sorted(self.meters.buses()):
            tasks.append((f"meters:{name}", functools.partial(self.meters.run, name)))
        return tasks

    def devices(self) -> list[DeviceSnapshot]:
        """Every device's statistics, bus by bus."""
        return [snap for owner in self.owners.values() for snap in owner.devices().values()]

    def ports(self) -> dict[str, bool | None]:
        """Each bus's port state: up, down, or not opened yet (None)."""
        return {name: owner.port_up for name, owner in self.owners.items()}

    def health(self) -> dict[str, Any]:
        """Each bus for ``/healthz``."""
        return {name: owner.health() for name, owner in self.owners.items()}

    @property
    def degraded(self) -> bool:
        """Whether some bus's port is down (a device offline is the device's state, not ours)."""
        return any(up is False for up in self.ports().values())

    async def close(self) -> None:
        """Close every bus (waiting exchanges fail, ports close, worker threads stop)."""
        for owner in self.owners.values():
            await owner.close()

    def _transition(self, snapshot: DeviceSnapshot) -> None:
        data = {"device": snapshot.device, "bus": snapshot.bus, "online": bool(snapshot.online)}
        with self._store.transaction() as tx:
            self._outbox.append(tx, DEVICE_ONLINE, data)

    def _record(self, reading: Reading) -> None:
        with self._store.transaction() as tx:
            self._outbox.append(tx, METER_READING, reading.event_data())
