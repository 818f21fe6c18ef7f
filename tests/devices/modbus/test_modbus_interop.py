"""Interop with an independent implementation, both ways, over RTU framing on TCP.

1. pymodbus 3.16.1's simulator (`pymodbus.simulator` SimData/SimDevice, `ModbusTcpServer` with
   ``framer=FramerType.RTU``) is read by OUR codec through ``serial.serial_for_url("socket://…")``,
   the way the gateway opens an RS-485-to-Ethernet server.
2. pymodbus's client (`AsyncModbusTcpClient(framer=FramerType.RTU)`) reads and writes OUR meter
   models served on one simulated line.

Known deviation, shown rather than hidden: pymodbus's simulator answers a request for a unit id
it does not serve with exception 04 (and logs a traceback); a real RS-485 device, and our model,
stay silent.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from devices.modbus import (
    SDM120,
    VALVE_CLOSED,
    WATER_METER,
    DataType,
    ExceptionCode,
    ExceptionReply,
    FunctionCode,
    ReadReply,
    ReadRequest,
    RegisterEntry,
    RegisterMap,
    RequestFramer,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
    plan_reads,
    sdm120_meter,
    sdm630_meter,
    water_meter,
)
from tests.devices.modbus.rtu_peers import BusServer, PymodbusSimulator, transact

HOLDING = FunctionCode.READ_HOLDING_REGISTERS
INPUT = FunctionCode.READ_INPUT_REGISTERS
SIM_TYPES = {
    DataType.UINT16: SimType.UINT16,
    DataType.INT16: SimType.INT16,
    DataType.UINT32: SimType.UINT32,
    DataType.INT32: SimType.INT32,
    DataType.FLOAT32: SimType.FLOAT32,
}

# Readings as a real meter shows them (float32 values that print short).
SDM120_VALUES = {
    "voltage": "229.8",
    "current": "4.35",
    "active_power": "998.5",
    "apparent_power": "1000",
    "reactive_power": "-52.25",
    "power_factor": "0.998",
    "phase_angle": "-3",
    "frequency": "49.98",
    "import_active_energy": "1240.25",
    "export_active_energy": "0.5",
    "import_reactive_energy": "12.75",
    "export_reactive_energy": "0",
    "total_active_energy": "1240.75",
    "total_reactive_energy": "12.75",
    "parity_stop": "0",
    "modbus_address": "1",
    "baud_rate_code": "2",
}
WATER_RAW = {  # register-level values pymodbus stores: litres, m³/h, centi-degrees, centivolts
    "cumulative_flow": 1_234_567,
    "flow_rate": 0.75,
    "reverse_flow": 12,
    "water_temperature": -150,
    "battery_voltage": 361,
    "valve": 0,
    "modbus_address": 3,
}
WATER_VALUES = {
    "cumulative_flow": Decimal("1234.567"),
    "flow_rate": Decimal("0.75"),
    "reverse_flow": Decimal("0.012"),
    "water_temperature": Decimal("-1.50"),
    "battery_voltage": Decimal("3.61"),
    "valve": Decimal(0),
    "modbus_address": Decimal(3),
}


def sim_device(unit: int, register_map: RegisterMap, raw: dict[str, float | int]) -> SimDevice:
    """A pymodbus SimDevice holding ``raw`` register-level values at ``register_map``'s places."""

    def table(function: FunctionCode) -> list[SimData]:
        entries: list[RegisterEntry] = [e for e in register_map if e.function == function]
        return [
            SimData(e.address, values=[raw[e.name]], datatype=SIM_TYPES[e.data_type])
            for e in entries
        ]

    bits = [SimData(0, count=16, values=False, datatype=SimType.BITS)]
    return SimDevice(id=unit, simdata=(bits, bits, table(HOLDING), table(INPUT)))


@pytest.fixture
def pymodbus_bus() -> Iterator[PymodbusSimulator]:
    sdm120 = sim_device(1, SDM120, {k: float(v) for k, v in SDM120_VALUES.items()})
    water = sim_device(3, WATER_METER, WATER_RAW)
    with PymodbusSimulator([sdm120, water]) as simulator:
        yield simulator


# --- 1. our codec reads pymodbus's simulator ----------------------------------------------------


def test_we_read_the_hand_checked_voltage(pymodbus_bus: PymodbusSimulator) -> None:
    with pymodbus_bus.open() as port:
        reply = transact(port, ReadRequest(1, INPUT, 0x0000, 2))
    assert reply == ReadReply(1, INPUT, (0x4365, 0xCCCD))


def test_we_read_every_sdm120_value_by_plan(pymodbus_bus: PymodbusSimulator) -> None:
    values: dict[str, Decimal] = {}
    with pymodbus_bus.open() as port:
        for block in plan_reads(SDM120):
            values |= block.decode(transact(port, block.request(1)))
    assert values == {name: Decimal(text) for name, text in SDM120_VALUES.items()}


def test_we_read_every_water_meter_value_by_plan(pymodbus_bus: PymodbusSimulator) -> None:
    values: dict[str, Decimal] = {}
    with pymodbus_bus.open() as port:
        for block in plan_reads(WATER_METER):
            values |= block.decode(transact(port, block.request(3)))
    assert values == WATER_VALUES


def test_our_writes_land_in_pymodbus(pymodbus_bus: PymodbusSimulator) -> None:
    with pymodbus_bus.open() as port:
        # The hand-checked FC10: float 2.0 into the SDM120's id setting.
        write = WriteMultipleRequest(1, 0x0014, (0x4000, 0x0000))
        assert transact(port, write) == WriteMultipleReply(1, 0x0014, 2)
        (block,) = plan_reads(SDM120, ["modbus_address"])
        assert block.decode(transact(port, block.request(1))) == {"modbus_address": 2}
        close = WriteSingleRequest(3, 0x0010, VALVE_CLOSED)
        assert transact(port, close) == WriteSingleReply(3, 0x0010, VALVE_CLOSED)
        (block,) = plan_reads(WATER_METER, ["valve"])
        assert block.decode(transact(port, block.request(3))) == {"valve": VALVE_CLOSED}


def test_pymodbus_refusals_decode_as_exception_replies(pymodbus_bus: PymodbusSimulator) -> None:
    with pymodbus_bus.open() as port:
        undefined = transact(port, ReadRequest(1, INPUT, 0x0002, 2))
        assert undefined == ExceptionReply(1, 4, ExceptionCode.ILLEGAL_DATA_ADDRESS)
        # The deviation: an absent unit id gets exception 04 where a real line stays silent.
        absent = transact(port, ReadRequest(9, INPUT, 0x0000, 2))
        assert absent == ExceptionReply(9, 4, ExceptionCode.SERVER_DEVICE_FAILURE)


def test_we_find_pymodbus_replies_through_noise() -> None:
    def noisy(sending: bool, packet: bytes) -> bytes:
        # Garbage before and after every reply pymodbus sends, as on a bad RS-485 line.
        return b"\x00\xff\x01\x04" + packet + b"\x01" if sending else packet

    device = sim_device(1, SDM120, {k: float(v) for k, v in SDM120_VALUES.items()})
    with PymodbusSimulator(device, trace_packet=noisy) as simulator, simulator.open() as port:
        (block,) = plan_reads(SDM120, ["total_active_energy", "total_reactive_energy"])
        assert block.decode(transact(port, block.request(1))) == {
            "total_active_energy": Decimal("1240.75"),
            "total_reactive_energy": Decimal("12.75"),
        }
        port.reset_input_buffer()


# --- 2. pymodbus's client reads our meters ------------------------------------------------------


def float32(registers: Sequence[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">2H", *registers))[0])


async def test_pymodbus_client_reads_and_writes_our_meters() -> None:
    meters = [
        sdm120_meter(1, power_w=1000, energy_kwh=Decimal("1240.25")),
        sdm630_meter(2, power_w=3000),
        water_meter(3, flow_m3h=Decimal("0.6"), total_m3=Decimal("1234.567")),
    ]
    async with BusServer(meters, RequestFramer, clock=lambda: 0.0) as bus:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=bus.port, framer=FramerType.RTU, timeout=1, retries=0
        )
        await client.connect()
        try:
            volts = await client.read_input_registers(0x0000, count=2, device_id=1)
            assert not volts.isError()
            assert volts.registers == [0x4365, 0xCCCD]
            assert client.convert_from_registers(
                volts.registers, data_type=client.DATATYPE.FLOAT32
            ) == pytest.approx(229.8)

            energy = await client.read_input_registers(0x0156, count=2, device_id=1)
            assert float32(energy.registers) == 1240.25

            three_phase = await client.read_input_registers(0x0034, count=2, device_id=2)
            assert float32(three_phase.registers) == 3000.0

            water = await client.read_input_registers(0x0000, count=8, device_id=3)
            assert (
                client.convert_from_registers(
                    water.registers[0:2], data_type=client.DATATYPE.UINT32
                )
                == 1_234_567
            )
            assert float32(water.registers[2:4]) == pytest.approx(0.6)

            setting = client.convert_to_registers(2.0, data_type=client.DATATYPE.FLOAT32)
            written = await client.write_registers(0x0014, setting, device_id=1)
            assert not written.isError()
            assert (written.address, written.count) == (0x0014, 2)
            assert meters[0].value("modbus_address") == 2

            valve = await client.write_register(0x0010, VALVE_CLOSED, device_id=3)
            assert not valve.isError()
            assert meters[2].value("valve") == VALVE_CLOSED
            rate = await client.read_input_registers(0x0002, count=2, device_id=3)
            assert float32(rate.registers) == 0.0
        finally:
            client.close()


async def test_pymodbus_client_sees_our_refusals_and_our_silence() -> None:
    async with BusServer([sdm120_meter(1)], RequestFramer) as bus:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=bus.port, framer=FramerType.RTU, timeout=0.3, retries=0
        )
        await client.connect()
        try:
            coils = await client.read_coils(0, count=8, device_id=1)
            assert coils.isError()
            assert coils.exception_code == ExceptionCode.ILLEGAL_FUNCTION

            undefined = await client.read_input_registers(0x0002, count=2, device_id=1)
            assert undefined.isError()
            assert undefined.exception_code == ExceptionCode.ILLEGAL_DATA_ADDRESS

            # Unit 9 is not on the line: nothing answers, so pymodbus times out.
            with pytest.raises(ModbusIOException):
                await client.read_input_registers(0x0000, count=2, device_id=9)

            again = await client.read_input_registers(0x0000, count=2, device_id=1)
            assert again.registers == [0x4365, 0xCCCD]
        finally:
            client.close()
    assert [reply is None for _, reply in bus.log] == [False, False, True, False]
