"""The simulated Modbus meter: what it answers, what it refuses, what it keeps quiet about."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.modbus import (
    SDM120,
    VALVE_CLOSED,
    VALVE_OPEN,
    WATER_METER,
    Accumulator,
    ExceptionCode,
    ExceptionReply,
    FunctionCode,
    ModbusMeter,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
    decode_reply,
    encode,
    plan_reads,
    sdm120_meter,
    sdm630_meter,
    water_meter,
    with_crc,
)
from devices.serialbus import BusDevice

HOLDING = FunctionCode.READ_HOLDING_REGISTERS
INPUT = FunctionCode.READ_INPUT_REGISTERS


def ask(meter: ModbusMeter, request: Request, now: float = 0.0) -> Reply | None:
    answer = meter.respond(encode(request), now)
    return None if answer is None else decode_reply(answer)


def read(meter: ModbusMeter, *names: str, now: float = 0.0) -> dict[str, Decimal]:
    values: dict[str, Decimal] = {}
    for block in plan_reads(meter.register_map, names or None):
        reply = ask(meter, block.request(meter.unit_id), now)
        assert reply is not None
        values |= block.decode(reply)
    return values


def test_meter_is_a_bus_device() -> None:
    device: BusDevice = sdm120_meter(7)
    assert device.address == "modbus:7"


def test_sdm120_answers_the_hand_checked_read() -> None:
    meter = sdm120_meter(1, energy_kwh=Decimal("1240.25"))
    assert meter.respond(bytes.fromhex("01 04 00 00 00 02 71 cb"), 0.0) == bytes.fromhex(
        "01 04 04 43 65 cc cd 6a 8a"
    )
    assert meter.respond(bytes.fromhex("01 04 01 56 00 02 90 27"), 0.0) == bytes.fromhex(
        "01 04 04 44 9b 08 00 99 5b"
    )


def test_sdm120_hand_checked_write_of_its_id_setting() -> None:
    meter = sdm120_meter(1)
    answer = meter.respond(bytes.fromhex("01 10 00 14 00 02 04 40 00 00 00 e6 90"), 0.0)
    assert answer == bytes.fromhex("01 10 00 14 00 02 01 cc")
    assert meter.value("modbus_address") == 2
    assert meter.unit_id == 1  # stored, not acted on


def test_energy_grows_with_power() -> None:
    meter = sdm120_meter(1, power_w=1000, energy_kwh=100)
    assert read(meter, "total_active_energy", now=50.0) == {"total_active_energy": 100}
    assert read(meter, "total_active_energy", now=50.0 + 3600)["total_active_energy"] == 101
    meter.set_value("active_power", 2000)
    values = read(meter, "import_active_energy", "total_active_energy", now=50.0 + 5400)
    assert values == {"import_active_energy": 102, "total_active_energy": 102}


def test_time_going_nowhere_changes_nothing() -> None:
    meter = sdm630_meter(2, power_w=3000, energy_kwh=5)
    meter.advance(100.0)
    meter.advance(100.0)
    meter.advance(99.0)  # never backwards
    assert meter.value("total_active_energy") == 5
    meter.advance(100.0 + 1200)
    assert meter.value("total_active_energy") == 6


def test_water_flows_while_the_valve_is_open() -> None:
    meter = water_meter(3, flow_m3h=Decimal("0.6"), total_m3=10)
    assert read(meter, now=0.0)["cumulative_flow"] == 10
    assert read(meter, "cumulative_flow", now=600.0) == {"cumulative_flow": Decimal("10.100")}
    assert ask(meter, WriteSingleRequest(3, 0x0010, VALVE_CLOSED), 600.0) == WriteSingleReply(
        3, 0x0010, VALVE_CLOSED
    )
    values = read(meter, "cumulative_flow", "flow_rate", "valve", now=1200.0)
    assert values == {"cumulative_flow": Decimal("10.100"), "flow_rate": 0, "valve": VALVE_CLOSED}
    ask(meter, WriteSingleRequest(3, 0x0010, VALVE_OPEN), 1200.0)
    assert read(meter, "cumulative_flow", "flow_rate", now=1800.0) == {
        "cumulative_flow": Decimal("10.200"),
        "flow_rate": Decimal("0.6"),
    }


def test_litre_counter_rolls_over() -> None:
    meter = water_meter(3, flow_m3h=3600, total_m3=Decimal("4294967.000"))
    meter.advance(0.0)
    meter.advance(1.0)  # one more m³
    assert meter.value("cumulative_flow") == Decimal("0.704")


def test_every_entry_reads_back_what_was_set() -> None:
    meter = ModbusMeter(5, SDM120, values={"voltage": "231.4", "phase_angle": -12.5})
    values = read(meter)
    assert values["voltage"] == Decimal("231.4")
    assert values["phase_angle"] == Decimal("-12.5")
    assert set(values) == set(SDM120.names)


def test_a_read_may_end_inside_a_value() -> None:
    meter = sdm120_meter(1)
    assert ask(meter, ReadRequest(1, INPUT, 0x0000, 1)) == ReadReply(1, INPUT, (0x4365,))
    assert ask(meter, ReadRequest(1, INPUT, 0x0001, 1)) == ReadReply(1, INPUT, (0xCCCD,))


@pytest.mark.parametrize(
    ("request_", "function", "code"),
    [
        (ReadRequest(1, INPUT, 0x0002, 2), 4, ExceptionCode.ILLEGAL_DATA_ADDRESS),  # undefined
        (ReadRequest(1, INPUT, 0x0000, 8), 4, ExceptionCode.ILLEGAL_DATA_ADDRESS),  # runs past
        (ReadRequest(1, HOLDING, 0x0000, 2), 3, ExceptionCode.ILLEGAL_DATA_ADDRESS),
        (WriteSingleRequest(1, 0x0014, 2), 6, ExceptionCode.ILLEGAL_DATA_ADDRESS),  # half a float
        (WriteMultipleRequest(1, 0x0000, (0, 0)), 0x10, ExceptionCode.ILLEGAL_DATA_ADDRESS),
        (WriteMultipleRequest(1, 0x0015, (0, 0)), 0x10, ExceptionCode.ILLEGAL_DATA_ADDRESS),
    ],
)
def test_refusals(request_: Request, function: int, code: ExceptionCode) -> None:
    meter = sdm120_meter(1)
    assert ask(meter, request_) == ExceptionReply(1, function, code)


def test_refused_writes_change_nothing() -> None:
    meter = sdm120_meter(1)
    # The first float is a setting, but the write runs on into undefined registers.
    words = (0x4000, 0, 0x4000, 0, 0x4000, 0)
    reply = ask(meter, WriteMultipleRequest(1, 0x0012, words))
    assert reply == ExceptionReply(1, 0x10, ExceptionCode.ILLEGAL_DATA_ADDRESS)
    assert meter.value("parity_stop") == 0


def test_unsupported_function_and_bad_quantity() -> None:
    meter = sdm120_meter(1)
    read_coils = with_crc(bytes.fromhex("01 01 00 00 00 08"))
    assert decode_reply(meter.respond(read_coils, 0.0) or b"") == ExceptionReply(1, 1, 1)
    too_many = with_crc(bytes.fromhex("01 04 00 00 00 7e"))
    assert decode_reply(meter.respond(too_many, 0.0) or b"") == ExceptionReply(1, 4, 3)


def test_silence_for_other_units_noise_and_broadcast_reads() -> None:
    meter = sdm120_meter(1)
    assert meter.respond(encode(ReadRequest(2, INPUT, 0, 2)), 0.0) is None
    assert meter.respond(with_crc(bytes.fromhex("02 01 00 00 00 08")), 0.0) is None
    assert meter.respond(bytes.fromhex("01 04 00 00 00 02 71 cc"), 0.0) is None  # bad CRC
    assert meter.respond(with_crc(bytes.fromhex("00 04 00 00 00 02")), 0.0) is None
    assert meter.respond(with_crc(bytes.fromhex("00 01 00 00 00 08")), 0.0) is None


def test_broadcast_writes_are_carried_out_silently() -> None:
    meters = [water_meter(unit) for unit in (1, 2, 3)]
    close_all = encode(WriteSingleRequest(0, 0x0010, VALVE_CLOSED))
    assert [m.respond(close_all, 0.0) for m in meters] == [None, None, None]
    assert [m.value("valve") for m in meters] == [VALVE_CLOSED] * 3
    assert meters[0].respond(encode(WriteMultipleRequest(0, 0x0000, (1, 2))), 0.0) is None


def test_write_multiple_reply() -> None:
    meter = water_meter(4)
    assert ask(meter, WriteMultipleRequest(4, 0x0010, (VALVE_CLOSED, 9))) == WriteMultipleReply(
        4, 0x0010, 2
    )
    assert meter.value("modbus_address") == 9


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="unit id"):
        ModbusMeter(0, SDM120)
    with pytest.raises(ValueError, match="no entry"):
        ModbusMeter(1, SDM120, accumulators=[Accumulator("nope", "voltage", Decimal(1))])
    with pytest.raises(KeyError):
        ModbusMeter(1, WATER_METER, values={"voltage": 230})
    with pytest.raises(ValueError, match="does not fit"):
        water_meter(1, values={"valve": 70000})
    assert "SDM120" in repr(sdm120_meter(1))


@given(st.binary(max_size=80))
def test_fuzz_the_meter_answers_bytes_or_nothing(noise: bytes) -> None:
    meter = water_meter(1)
    answer = meter.respond(noise, 0.0)
    if answer is not None:
        assert decode_reply(answer).unit == 1
