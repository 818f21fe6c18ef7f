"""``courtyard sim dlt645|modbus|cjt188`` serve meters a real master can read through ``socket://``.

Each test runs the real command in a subprocess on a free loopback port, parses the addresses it
prints, and reads a meter through the line: with the device codec (DL/T 645), with the gateway's
own drivers (the exact bytes and reply checks the gateway uses), and for Modbus also with
pymodbus's serial client, an independent master that opens ``socket://`` like a serial port.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
import serial
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient

from courtyard.embedded_broker import free_port
from devices.dlt645 import Address, Decoder, ReadReply, ReadRequest, encode
from gateway.bus_errors import DeviceReplyError
from gateway.drivers import Value, meter_driver
from gateway.settings import MeterSettings

WAIT_S = 10.0


@contextmanager
def sim(*args: str) -> Iterator[tuple[str, list[str]]]:
    """Run ``courtyard sim ARGS`` until the end of the block; its URL and printed addresses."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "courtyard", "sim", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.startswith("serving "), header
        count = int(header.split()[1])
        url = header.split(" on ", 1)[1].split(" ", 1)[0]
        addresses = [proc.stdout.readline().strip() for _ in range(count)]
        yield url, addresses
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def read_like_the_gateway(port: serial.SerialBase, settings: MeterSettings) -> dict[str, Value]:
    """Every configured value of one meter, through the gateway's driver for its protocol."""
    values: dict[str, Value] = {}
    for plan in meter_driver(settings).plan():
        port.write(plan.request.data)
        decoder = plan.request.decoder()
        deadline = time.monotonic() + WAIT_S
        reply: object | None = None
        while reply is None:
            assert time.monotonic() < deadline, f"no reply from {settings.address}"
            reply = next((f for f in decoder.feed(port.read(64)) if plan.request.accept(f)), None)
        values.update(plan.values(reply))
    return values


def test_sim_dlt645_serves_readable_meters() -> None:
    with sim("dlt645", "--meters", "3") as (url, addresses):
        assert url.startswith("socket://127.0.0.1:")
        assert addresses == ["000000000001", "000000000002", "000000000003"]
        port = serial.serial_for_url(url, timeout=2)
        try:
            port.write(encode(ReadRequest(Address(addresses[1]), 0x00010000), preamble=4))
            decoder = Decoder()
            frames: list[object] = []
            while not frames:
                chunk = port.read(64)
                assert chunk, "no reply from the simulated meter"
                frames = list(decoder.feed(chunk))
        finally:
            port.close()
    (reply,) = frames
    assert isinstance(reply, ReadReply)
    assert reply.di == 0x00010000
    assert isinstance(reply.value, Decimal)
    assert reply.value >= Decimal("1074.00")


MODBUS_CASES = {
    # model: (values read, the growing total, unit 2's starting total, unit 2's rate)
    "sdm120": (("energy_kwh", "power_kw"), "energy_kwh", Decimal(1074), Decimal("1.0")),
    "sdm630": (("energy_kwh", "power_kw"), "energy_kwh", Decimal(1074), Decimal("3.0")),
    "water": (("volume_m3", "flow_m3h", "valve"), "volume_m3", Decimal(17), Decimal("1.2")),
}


@pytest.mark.parametrize("model", sorted(MODBUS_CASES))
def test_sim_modbus_serves_meters_whose_totals_grow(model: str) -> None:
    names, total, start, rate = MODBUS_CASES[model]
    listen = f"127.0.0.1:{free_port()}"
    with sim("modbus", "--listen", listen, "--meters", "3", "--model", model) as (url, units):
        assert url == f"socket://{listen}"
        assert units == ["1", "2", "3"]
        settings = MeterSettings(
            id="m2", bus="b", protocol="modbus", address=units[1], model=model, values=names
        )
        assert settings.effective_kind == ("water" if model == "water" else "electricity")
        with serial.serial_for_url(url, timeout=0.2) as port:
            first = read_like_the_gateway(port, settings)
            assert set(first) == set(names)
            assert start <= Decimal(first[total]) < start + 1
            assert Decimal(first["flow_m3h" if model == "water" else "power_kw"]) == rate
            if model == "water":
                assert first["valve"] == "open"
            # The total advances with the rate on the simulator's clock.
            deadline = time.monotonic() + WAIT_S
            while Decimal(read_like_the_gateway(port, settings)[total]) <= Decimal(first[total]):
                assert time.monotonic() < deadline, f"{total} did not grow"
                time.sleep(0.2)  # the meter's clock must move on between two polls


def test_sim_modbus_is_read_by_pymodbus_through_socket_url() -> None:
    with sim(
        "modbus", "--meters", "3", "--model", "water", "--pace", "--baud", "19200", "--parity", "E"
    ) as (url, units):
        assert units == ["1", "2", "3"]
        client = ModbusSerialClient(url, framer=FramerType.RTU, baudrate=19200, timeout=2)
        assert client.connect()
        try:
            litres = client.read_input_registers(0x0000, count=2, device_id=3)
            assert not litres.isError()
            volume = client.convert_from_registers(
                litres.registers, data_type=client.DATATYPE.UINT32
            )
            assert 20_500 <= volume < 21_500  # 10 + 3.5 × 3 m³, in litres
            valve = client.read_holding_registers(0x0010, count=1, device_id=2)
            assert valve.registers == [0]  # open
        finally:
            client.close()


def test_sim_cjt188_serves_meters_in_their_di_order() -> None:
    with sim("cjt188", "--meters", "3", "--di-order", "low_first") as (url, addresses):
        assert addresses == ["00000000000001", "00000000000002", "00000000000003"]

        def meter(di_order: str) -> MeterSettings:
            return MeterSettings.model_validate(
                {
                    "id": "w2",
                    "bus": "b",
                    "protocol": "cjt188",
                    "address": addresses[1],
                    "di_order": di_order,
                    "values": ("volume_m3", "valve"),
                }
            )

        assert meter("low_first").effective_kind == "water"
        with serial.serial_for_url(url, timeout=0.2) as port:
            values = read_like_the_gateway(port, meter("low_first"))
            assert Decimal("29.00") <= Decimal(values["volume_m3"]) < Decimal("29.10")
            assert values["valve"] == "open"
            # Asked in the standard's order, such a meter answers with an error reply.
            with pytest.raises(DeviceReplyError, match="error reply"):
                read_like_the_gateway(port, meter("high_first"))
