"""Our water meters on the project's simulated RS-485 / M-Bus line (`devices.serialbus.BusServer`).

A master reads them through ``serial.serial_for_url(bus.url)`` with our `Decoder`, through FE
preambles, injected garbage and damaged checksums, and closes a valve on one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import serial

from devices.cjt188 import (
    CurrentData,
    Decoder,
    Frame,
    Message,
    MeterAddress,
    MeterType,
    ReadCurrentData,
    RequestFramer,
    ValveAction,
    ValveControl,
    ValveReply,
    ValveState,
    WaterMeter,
    encode,
    from_frame,
    to_frame,
)
from devices.serialbus import BusServer, Fault

FIRST, SECOND = "00000000000012", "20240001234567"


@pytest.fixture
def meters() -> list[WaterMeter]:
    return [WaterMeter(FIRST, total_m3=Decimal("1000.10")), WaterMeter(SECOND, total_m3=7)]


@pytest.fixture
def bus(meters: list[WaterMeter]) -> Iterator[BusServer]:
    with BusServer(RequestFramer(), meters, seed=3) as server:
        yield server


@pytest.fixture
def port(bus: BusServer) -> Iterator[serial.SerialBase]:
    with serial.serial_for_url(bus.url, timeout=1.0) as opened:
        yield opened


def exchange(port: serial.SerialBase, decoder: Decoder, address: str, message: Message) -> Frame:
    """Send ``message`` to ``address``; return the first reply frame from that meter."""
    meter = MeterAddress(address)
    port.write(encode(to_frame(message, MeterType.COLD_WATER, meter)))
    while True:
        chunk = port.read(max(1, port.in_waiting))
        if not chunk:
            raise TimeoutError(f"no reply from {address}")
        for frame in decoder.feed(chunk):
            if frame.reply and frame.address == meter:
                return frame


def test_reading_two_meters_and_closing_a_valve(
    bus: BusServer, port: serial.SerialBase, meters: list[WaterMeter]
) -> None:
    decoder = Decoder()
    first = from_frame(exchange(port, decoder, FIRST, ReadCurrentData(1)))
    assert isinstance(first, CurrentData)
    assert first.current.value >= Decimal("1000.10")
    second = from_frame(exchange(port, decoder, SECOND, ReadCurrentData(2)))
    assert isinstance(second, CurrentData)
    assert second.current.value >= 7
    closed = from_frame(exchange(port, decoder, SECOND, ValveControl(3, ValveAction.CLOSE)))
    assert isinstance(closed, ValveReply)
    assert closed.status is not None
    assert closed.status.valve is ValveState.CLOSED
    assert meters[1].valve is ValveState.CLOSED
    assert decoder.discarded == 6  # the meters' FE FE preambles, nothing else
    assert bus.stats.overlaps == 0


@pytest.mark.parametrize("fault", [Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER])
def test_replies_are_found_through_garbage(
    bus: BusServer, port: serial.SerialBase, fault: Fault
) -> None:
    bus.inject(f"cjt188:{FIRST}", fault, garbage=b"\x68\x10\x16\xfe\x00")
    decoder = Decoder()
    for ser in (1, 2):
        reply = from_frame(exchange(port, decoder, FIRST, ReadCurrentData(ser)))
        assert isinstance(reply, CurrentData)
        assert reply.ser == ser


def test_a_bad_checksum_is_counted_and_the_retry_read(
    bus: BusServer, port: serial.SerialBase
) -> None:
    bus.inject(f"cjt188:{FIRST}", Fault.BAD_CHECKSUM, count=1)
    decoder = Decoder()
    port.write(encode(to_frame(ReadCurrentData(1), MeterType.COLD_WATER, MeterAddress(FIRST))))
    assert decoder.feed(port.read(2 + 13 + 22)) == []  # preamble and the whole damaged reply
    assert decoder.checksum_errors == 1
    reply = from_frame(exchange(port, decoder, FIRST, ReadCurrentData(2)))
    assert isinstance(reply, CurrentData)
