"""Periodic ``device.health`` reports, and the ``kind`` that device and reading events carry.

A real gateway (store, outbox, uplink over the test broker, fake cloud) runs one simulated line
with two DL/T 645 meters polled back to back and a lock board nobody polls, reporting health at
the shortest interval the settings allow (5 s). The reports land in the outbox, the counters
grow from one report to the next, and a meter that vanished is reported offline. A bus too big
for one event's size limit is reported in parts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cloud_sync.protocol import Event
from cloud_sync.protocol.wire import encode
from devices.lockboard import LockBoard
from devices.serialbus import Fault
from gateway import Gateway, GatewaySettings
from gateway.buses import DEVICE_HEALTH, Buses
from gateway.metrics import GatewayMetrics
from gateway.outbox import MAX_EVENT_DATA_BYTES, Outbox
from gateway.settings import BusSettings, LockBoardSettings, MeterSettings
from gateway.store import Store
from tests.gateway.bus_sim import bus_settings, make_meters, meter_settings, plate, serve
from tests.gateway.harness import FakeCloud

INTERVAL_S = 5.0
ENTRY_KEYS = {
    "device",
    "kind",
    "online",
    "last_seen",
    "requests",
    "timeouts",
    "failures",
    "checksum_errors",
    "latency_ms",
}


class Recorder:
    """Events as the outbox commits them, with a way to wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]

    async def wait_for(self, predicate: Callable[[Recorder], Any], within: float) -> Any:
        async with asyncio.timeout(within):
            while not (result := predicate(self)):
                self._changed.clear()
                await self._changed.wait()
            return result


def by_device(event: Event) -> dict[str, dict[str, Any]]:
    return {entry["device"]: entry for entry in event.data["devices"]}


async def test_health_reports_counters_and_a_vanished_meter(
    gateway_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[..., Awaitable[Gateway]],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
) -> None:
    with serve([*make_meters(2), LockBoard(0)], mixed=True) as server:
        settings = gateway_settings(
            # 500 ms: healthy meters answer in a few ms, but a loaded CI machine once took over
            # 100 ms and counted a timeout against a meter that was there all along.
            buses=[bus_settings(server.url, timeout_ms=500, retries=0, offline_after=2)],
            meters=meter_settings(2, values=("energy_kwh",)),
            lockboards=[LockBoardSettings(id="bank-a", bus="line-a", board=0)],
            health_interval_s=INTERVAL_S,
        )
        cloud = await fake_cloud(settings)
        gw = await start_gateway(settings)
        assert "bus-health" in gw.supervisor.states()
        recorder = Recorder()
        gw.outbox.add_listener(recorder)

        # The first report comes one interval after start (min(interval, 60 s)).
        first = await recorder.wait_for(lambda r: r.of(DEVICE_HEALTH), 3 * INTERVAL_S)
        (report,) = first
        assert report.data["bus"] == "line-a"
        devices = by_device(report)
        assert set(devices) == {"m1", "m2", "bank-a"}
        assert all(set(entry) == ENTRY_KEYS for entry in devices.values())
        for meter in ("m1", "m2"):
            entry = devices[meter]
            assert entry["kind"] == "meter"
            assert entry["online"] is True
            assert entry["requests"] > 0
            assert isinstance(entry["last_seen"], int)
            assert isinstance(entry["latency_ms"], int)
            assert entry["timeouts"] == entry["failures"] == entry["checksum_errors"] == 0
        # Nobody has talked to the lock board yet: its state is unknown, its counters zero.
        assert devices["bank-a"] == {
            "device": "bank-a",
            "kind": "lockboard",
            "online": None,
            "last_seen": None,
            "requests": 0,
            "timeouts": 0,
            "failures": 0,
            "checksum_errors": 0,
            "latency_ms": None,
        }

        # Meter 2 vanishes: it goes offline (one device.online event) and the next report says so.
        server.inject(plate(2), Fault.VANISH, duration_s=60)
        await recorder.wait_for(
            lambda r: any(
                e.data["device"] == "m2" and not e.data["online"] for e in r.of("device.online")
            ),
            3 * INTERVAL_S,
        )
        second = (await recorder.wait_for(lambda r: r.of(DEVICE_HEALTH)[1:], 3 * INTERVAL_S))[0]
        later = by_device(second)
        assert later["m2"]["online"] is False
        assert later["m2"]["timeouts"] > devices["m2"]["timeouts"]
        assert later["m2"]["failures"] >= 2
        assert later["m2"]["last_seen"] == gw.buses.owners["line-a"].device("m2").last_seen_ms
        assert later["m1"]["online"] is True
        assert later["m1"]["requests"] > devices["m1"]["requests"]
        assert later["m1"]["last_seen"] > devices["m1"]["last_seen"]

        # The reports reach the cloud like every other event; device and reading events say kind.
        await cloud.wait_for(lambda c: len(c.find(DEVICE_HEALTH)) >= 2)
        online = cloud.find("device.online")
        assert {(e.data["device"], e.data["kind"]) for e in online} == {
            ("m1", "meter"),
            ("m2", "meter"),
        }
        readings = cloud.find("meter.reading")
        assert readings
        assert {e.data["kind"] for e in readings} == {"electricity"}


async def test_a_crowded_bus_is_reported_in_parts_within_the_size_limit(tmp_path: Path) -> None:
    # 247 meters with the longest ids allowed would not fit one event's data.
    ids = [f"meter-{n:03d}-".ljust(64, "x") for n in range(1, 248)]
    settings = GatewaySettings(
        id="gw-crowded",
        data_dir=tmp_path,
        buses=[BusSettings(name="long-line", url="loop://")],
        meters=[
            MeterSettings(id=meter_id, bus="long-line", address=plate(n))
            for n, meter_id in enumerate(ids, start=1)
        ],
    )
    with Store(tmp_path / "gateway.db", settings.id) as store:
        outbox = Outbox(store)
        buses = Buses(settings, store, outbox, GatewayMetrics())
        try:
            parts = buses.report_health()
            assert parts > 1
            events = outbox.pending(100)
            assert [e.type for e in events] == [DEVICE_HEALTH] * parts
            assert all(len(encode(e.data)) <= MAX_EVENT_DATA_BYTES for e in events)
            assert all(e.data["bus"] == "long-line" for e in events)
            reported = [entry["device"] for e in events for entry in e.data["devices"]]
            assert reported == ids  # every device once, in configuration order
        finally:
            await buses.close()


def test_a_bus_carries_at_most_247_devices(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="more than 247 devices"):
        GatewaySettings(
            id="gw-too-many",
            data_dir=tmp_path,
            buses=[BusSettings(name="line", url="loop://")],
            meters=[MeterSettings(id=f"m{n}", bus="line", address=plate(n)) for n in range(1, 249)],
        )


@pytest.mark.parametrize("interval", [0, 4.9, 86_401])
def test_the_health_interval_is_bounded_and_cannot_be_switched_off(
    tmp_path: Path, interval: float
) -> None:
    with pytest.raises(ValidationError, match="health_interval_s"):
        GatewaySettings(id="gw", data_dir=tmp_path, health_interval_s=interval)
