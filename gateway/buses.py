"""The site's RS-485 buses, wired: owners, meter schedules, lockers, events, health, metrics.

:class:`Buses` is what :class:`~gateway.daemon.Gateway` holds for the serial side. It builds one
:class:`~gateway.bus.BusOwner` per configured bus (gap from the protocols on it), the
:class:`~gateway.meters.MeterReader` and :class:`~gateway.lockers.Lockers` on top, and turns what
they report into outbox events, each in a transaction of its own:

* ``device.online`` ``{"device", "kind", "bus", "online"}`` once per transition of a meter or
  lock board (``kind``: ``"meter"`` or ``"lockboard"``);
* ``meter.reading`` ``{"meter", "kind", "bus", "values", "read_at"}`` for every reading
  (``kind``: ``"electricity"``, ``"water"``, ``"gas"`` or ``"heat"``);
* ``device.health`` ``{"bus", "devices": [...]}`` per bus every ``health_interval_s``: each
  device's state and counters (:meth:`Buses.health_events`). The first report comes
  ``min(health_interval_s, 60 s)`` after the task starts — time for the first polls, and soon
  enough that a freshly started gateway shows its statistics within a minute — then at a fixed
  rate. A bus whose devices would not fit one event's size limit (16 KiB of data; a bus of 247
  devices with long ids can exceed it) is reported in several events of the same shape, each a
  part of the bus's devices.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from cloud_sync.protocol.wire import encode
from gateway.bus import BusOwner
from gateway.bus_stats import DeviceSnapshot
from gateway.drivers import bus_gap_s
from gateway.lockers import Lockers
from gateway.meters import METER_READING, MeterReader, Reading
from gateway.metrics import GatewayMetrics
from gateway.outbox import MAX_EVENT_DATA_BYTES, Outbox
from gateway.settings import GatewaySettings
from gateway.store import Store

__all__ = ["DEVICE_HEALTH", "DEVICE_ONLINE", "FIRST_HEALTH_REPORT_MAX_S", "Buses"]

DEVICE_ONLINE = "device.online"
DEVICE_HEALTH = "device.health"
FIRST_HEALTH_REPORT_MAX_S: Final = 60.0
"""The first ``device.health`` report comes after one interval, but never later than this."""

DeviceKind = Literal["meter", "lockboard"]


def _device_health(snapshot: DeviceSnapshot, kind: DeviceKind) -> dict[str, Any]:
    latency = snapshot.latency_ewma_ms
    return {
        "device": snapshot.device,
        "kind": kind,
        "online": snapshot.online,
        "last_seen": snapshot.last_seen_ms,
        "requests": snapshot.requests,
        "timeouts": snapshot.timeouts,
        "failures": snapshot.failures,
        "checksum_errors": snapshot.checksum_errors,
        "latency_ms": None if latency is None else round(latency),
    }


def _size(data: dict[str, Any]) -> int:
    return len(encode(data))


def _split(bus: str, devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"bus", "devices"}`` events holding ``devices`` in order, each within the size limit."""
    events: list[dict[str, Any]] = []
    part: list[dict[str, Any]] = []
    # Size of the envelope, plus each entry and its comma: an upper bound that is exact enough.
    used = base = _size({"bus": bus, "devices": []})
    for entry in devices:
        size = _size(entry) + 1
        if part and used + size > MAX_EVENT_DATA_BYTES:
            events.append({"bus": bus, "devices": part})
            part, used = [], base
        part.append(entry)
        used += size
    if part or not events:
        events.append({"bus": bus, "devices": part})
    return events


def _observe(metrics: GatewayMetrics, bus: str, device: str, seconds: float) -> None:
    metrics.bus_latency.labels(bus, device).observe(seconds)


class Buses:
    """Every bus of one gateway and the services that use them."""

    def __init__(
        self, settings: GatewaySettings, store: Store, outbox: Outbox, metrics: GatewayMetrics
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._health_interval_s = settings.health_interval_s
        self._kinds: dict[str, DeviceKind] = {m.id: "meter" for m in settings.meters}
        self._kinds.update((b.id, "lockboard") for b in settings.lockboards)
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
        """The long-lived tasks to supervise: one owner per bus, one schedule per metered bus,
        and the periodic health report (when there are buses)."""
        tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (f"bus:{name}", owner.run) for name, owner in self.owners.items()
        ]
        for name in sorted(self.meters.buses()):
            tasks.append((f"meters:{name}", functools.partial(self.meters.run, name)))
        if self.owners:
            tasks.append(("bus-health", self.run_health))
        return tasks

    def health_events(self) -> list[dict[str, Any]]:
        """The data of the ``device.health`` events describing every bus now (see module doc)."""
        events: list[dict[str, Any]] = []
        for name, owner in self.owners.items():
            devices = [
                _device_health(snapshot, self._kinds.get(device, "meter"))
                for device, snapshot in owner.devices().items()
            ]
            events.extend(_split(name, devices))
        return events

    def report_health(self) -> int:
        """Append the ``device.health`` events of every bus in one transaction; how many."""
        events = self.health_events()
        with self._store.transaction() as tx:
            for data in events:
                self._outbox.append(tx, DEVICE_HEALTH, data)
        return len(events)

    async def run_health(self) -> None:
        """Report health at a fixed rate, the first time soon after start (a supervised task)."""
        interval = self._health_interval_s
        due = time.monotonic() + min(interval, FIRST_HEALTH_REPORT_MAX_S)
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self.report_health()
            # Fixed rate; a late report (a suspended box) goes out at once, missed ones are not
            # caught up.
            due = max(due + interval, time.monotonic())

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
        data = {
            "device": snapshot.device,
            "kind": self._kinds.get(snapshot.device, "meter"),
            "bus": snapshot.bus,
            "online": bool(snapshot.online),
        }
        with self._store.transaction() as tx:
            self._outbox.append(tx, DEVICE_ONLINE, data)

    def _record(self, reading: Reading) -> None:
        with self._store.transaction() as tx:
            self._outbox.append(tx, METER_READING, reading.event_data())
