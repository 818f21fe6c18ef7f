"""Issue 3, Done-when 2: the `dlt645` package's meter simulator, read by our bus owner and driver.

The peer (dlt645 3.2.0, an independent implementation) serves one meter on TCP; the gateway opens
it as ``socket://`` like any RS-485-to-Ethernet server. Its address string is in wire order
(PROTOCOLS.md §1.4): nameplate 001500076004 is configured on the peer as ``"046007001500"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import dlt645
import pytest
from dlt645 import MeterServerService

from devices.dlt645 import Address, ReadAddressReply
from gateway.bus import BusOwner
from gateway.bus_exchange import Exchange, Priority
from gateway.drivers.dlt645 import read_address
from gateway.meters import MeterReader, Reading
from gateway.settings import BusSettings, MeterSettings

dlt645.disable_logging()

PLATE = "001500076004"
PEER_ADDRESS = "046007001500"  # the same meter as the peer spells it: wire order


@pytest.fixture(scope="module")
def peer() -> Iterator[MeterServerService]:
    server = MeterServerService.new_tcp_server("127.0.0.1", 0, 3)
    server.set_address(PEER_ADDRESS)
    server.set_00(0x00010000, 1234.56)
    server.set_02(0x02010100, 220.1)
    assert server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def owner(peer: MeterServerService) -> AsyncIterator[BusOwner]:
    bus = BusSettings(name="peer", url=f"socket://127.0.0.1:{peer.server.port}", timeout_ms=2000)
    owner = BusOwner(bus, gap_s=0.005)
    task = asyncio.create_task(owner.run())
    yield owner
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await owner.close()


async def test_the_peer_meter_is_read_through_socket(owner: BusOwner) -> None:
    readings: list[Reading] = []
    meter = MeterSettings(
        id="peer-meter", bus="peer", address=PLATE, values=("energy_kwh", "voltage_v")
    )
    reader = MeterReader([meter], {"peer": owner}, readings.append)

    reading = await reader.read_now("peer-meter")

    assert reading.values == {"energy_kwh": Decimal("1234.56"), "voltage_v": Decimal("220.1")}
    assert reading.event_data()["values"] == {"energy_kwh": "1234.56", "voltage_v": "220.1"}
    assert owner.device("peer-meter").online is True


async def test_the_peer_meter_tells_its_address(owner: BusOwner) -> None:
    request = read_address()
    outcome = await owner.request(
        Exchange(
            "commissioning",
            request.data,
            request.decoder,
            request.accept,
            2.0,
            0,
            Priority.ON_DEMAND,
        )
    )
    assert outcome.frame == ReadAddressReply(Address(PLATE))
