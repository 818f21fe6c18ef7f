"""Our meters on the project's simulated RS-485 line (`devices.serialbus.BusServer`).

A gateway opens the line with ``serial.serial_for_url(bus.url)`` and talks RTU; the bus frames
requests with our `RequestFramer`, offers them to every meter, and shapes replies with the faults
injected. Our `ReplyDecoder` must find every reply through noise and count damaged ones, and
pymodbus's own client must be able to poll the same line.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import serial
from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient

from devices.modbus import (
    SDM120,
    WATER_METER,
    ReplyDecoder,
    RequestFramer,
    encode,
    plan_reads,
    sdm120_meter,
    water_meter,
)
from devices.serialbus import BusServer, Fault
from tests.devices.modbus.rtu_peers import transact

ENERGY = plan_reads(SDM120, ["total_active_energy"])[0]


@pytest.fixture
def bus() -> Iterator[BusServer]:
    meters = [sdm120_meter(1, energy_kwh=Decimal("1240.25")), water_meter(3, total_m3=5)]
    with BusServer(RequestFramer(), meters, seed=7) as server:
        yield server


@pytest.fixture
def port(bus: BusServer) -> Iterator[serial.SerialBase]:
    with serial.serial_for_url(bus.url, timeout=1.0) as opened:
        yield opened


def test_reading_both_meters(bus: BusServer, port: serial.SerialBase) -> None:
    assert ENERGY.decode(transact(port, ENERGY.request(1))) == {
        "total_active_energy": Decimal("1240.25")
    }
    (water,) = plan_reads(WATER_METER, ["cumulative_flow"])
    assert water.decode(transact(port, water.request(3)))["cumulative_flow"] >= 5
    stats = bus.stats
    assert (stats.requests, stats.unanswered, stats.overlaps) == (2, 0, 0)


@pytest.mark.parametrize("fault", [Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER])
def test_replies_are_found_through_garbage(
    bus: BusServer, port: serial.SerialBase, fault: Fault
) -> None:
    bus.inject("modbus:1", fault, garbage=b"\x00\x01\x04\x04\xff")
    assert ENERGY.decode(transact(port, ENERGY.request(1))) == {
        "total_active_energy": Decimal("1240.25")
    }


@pytest.mark.parametrize("fault", [Fault.GARBAGE_INSIDE, Fault.BAD_CHECKSUM])
def test_a_damaged_reply_is_counted_and_the_retry_read(
    bus: BusServer, port: serial.SerialBase, fault: Fault
) -> None:
    bus.inject("modbus:1", fault, count=1, position=4 if fault is Fault.GARBAGE_INSIDE else None)
    request = ENERGY.request(1)
    decoder = ReplyDecoder(request)
    port.write(encode(request))
    received = port.read(5 + 2 * request.count)  # the whole reply, damaged
    assert decoder.feed(received) == []
    assert decoder.crc_errors == 1
    port.write(encode(request))  # the retry
    (reply,) = decoder.feed(port.read(5 + 2 * request.count))
    assert ENERGY.decode(reply) == {"total_active_energy": Decimal("1240.25")}


def test_pymodbus_client_polls_the_simulated_line(bus: BusServer) -> None:
    client = ModbusTcpClient("127.0.0.1", port=bus.port, framer=FramerType.RTU, timeout=1)
    assert client.connect()
    try:
        energy = client.read_input_registers(0x0156, count=2, device_id=1)
        assert client.convert_from_registers(
            energy.registers, data_type=client.DATATYPE.FLOAT32
        ) == pytest.approx(1240.25)
        valve = client.write_register(0x0010, 1, device_id=3)
        assert not valve.isError()
    finally:
        client.close()
