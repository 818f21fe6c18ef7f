"""The simulated CJ/T 188 water meter: readings that flow, a valve, addressing, refusals."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.cjt188 import (
    WILDCARD_ADDRESS,
    AddressReply,
    CurrentData,
    DiOrder,
    ErrorReply,
    Frame,
    Function,
    Message,
    MeterAddress,
    MeterType,
    Quantity,
    ReadAddress,
    ReadCurrentData,
    RequestFramer,
    Status,
    ValveAction,
    ValveControl,
    ValveReply,
    ValveState,
    WaterMeter,
    decode,
    encode,
    from_frame,
    to_frame,
)
from devices.serialbus import BusDevice
from tests.devices.cjt188.known_frames import CLOSE_VALVE, READ

ADDRESS = "00000000000012"


def ask(
    meter: WaterMeter,
    message: Message,
    now: float = 0.0,
    *,
    address: MeterAddress | None = None,
    meter_type: MeterType = MeterType.COLD_WATER,
    di_order: DiOrder = DiOrder.HIGH_FIRST,
) -> Message | None:
    frame = to_frame(message, meter_type, address or meter.meter_address, di_order=di_order)
    answer = meter.respond(encode(frame), now)
    if answer is None:
        return None
    reply = decode(answer)
    assert reply.reply
    assert reply.address == meter.meter_address
    return from_frame(reply, di_order=di_order)


def reading(meter: WaterMeter, now: float) -> CurrentData:
    answer = ask(meter, ReadCurrentData(1), now)
    assert isinstance(answer, CurrentData)
    return answer


def test_meter_is_a_bus_device() -> None:
    device: BusDevice = WaterMeter(ADDRESS)
    assert device.address == "cjt188:00000000000012"
    assert "00000000000012" in repr(device)


def test_answers_the_hand_checked_read() -> None:
    meter = WaterMeter(ADDRESS, total_m3=Decimal("1000.10"), preamble=0)
    answer = meter.respond(bytes.fromhex(READ), 0.0)
    assert answer is not None
    assert answer[:10] == bytes.fromhex("68 10 12 00 00 00 00 00 00 81")
    assert from_frame(decode(answer)) == CurrentData(
        0, Quantity(Decimal("1000.10")), Quantity(Decimal("1000.10")), None, Status(0)
    )


def test_replies_start_with_a_preamble() -> None:
    answer = WaterMeter(ADDRESS).respond(bytes.fromhex(READ), 0.0)
    assert answer is not None
    assert answer.startswith(b"\xfe\xfe\x68")


def test_the_hand_checked_valve_close_closes_the_valve() -> None:
    meter = WaterMeter(ADDRESS)
    answer = meter.respond(bytes.fromhex(CLOSE_VALVE), 0.0)
    assert answer is not None
    assert from_frame(decode(answer)) == ValveReply(0, Status.of(ValveState.CLOSED))
    assert meter.valve is ValveState.CLOSED


def test_water_flows_while_the_valve_is_open() -> None:
    meter = WaterMeter(ADDRESS, total_m3=10, flow_m3h=Decimal("0.6"))
    assert reading(meter, 100.0).current.value == 10
    assert reading(meter, 100.0 + 600).current.value == Decimal("10.10")
    assert ask(meter, ValveControl(2, ValveAction.CLOSE), 700.0) == ValveReply(
        2, Status.of(ValveState.CLOSED)
    )
    closed = reading(meter, 700.0 + 3600)
    assert closed.current.value == Decimal("10.10")
    assert closed.status.valve is ValveState.CLOSED
    ask(meter, ValveControl(3, ValveAction.OPEN), 4300.0)
    assert reading(meter, 4300.0 + 600).current.value == Decimal("10.20")


def test_readings_show_hundredths_rounded_down_and_roll_over() -> None:
    meter = WaterMeter(ADDRESS, total_m3=Decimal("999999.99"), flow_m3h=36)
    meter.advance(0.0)
    meter.advance(2.0)  # 0.02 m³ more
    assert meter.total == Decimal("0.01")
    meter = WaterMeter(ADDRESS, total_m3=Decimal("5.559"))
    assert reading(meter, 0.0).current.value == Decimal("5.55")
    with pytest.raises(ValueError, match=r"XXXXXX\.XX"):
        WaterMeter(ADDRESS, total_m3=1_000_000)


def test_settlement_day() -> None:
    meter = WaterMeter(ADDRESS, total_m3=50, settlement_m3=40, flow_m3h=1)
    assert reading(meter, 0.0).settlement.value == 40
    meter.advance(3600.0)
    meter.settle()
    values = reading(meter, 3600.0)
    assert values.settlement.value == values.current.value == 51


def test_clock_battery_and_jammed_valve() -> None:
    moment = datetime(2024, 3, 9, 17, 45, 30)
    meter = WaterMeter(ADDRESS, clock=lambda: moment, battery_low=True)
    values = reading(meter, 0.0)
    assert values.clock == moment
    assert values.status.battery_low
    meter.valve_jammed = True
    answer = ask(meter, ValveControl(4, ValveAction.CLOSE))
    assert isinstance(answer, ValveReply)
    assert answer.status is not None
    assert answer.status.valve is ValveState.ABNORMAL


def test_wildcards_reach_the_meter() -> None:
    meter = WaterMeter(ADDRESS)
    answer = ask(meter, ReadAddress(8), address=WILDCARD_ADDRESS, meter_type=MeterType.WILDCARD)
    assert answer == AddressReply(8)
    partial = MeterAddress("AAAAAAAAAAAA12")
    assert isinstance(ask(meter, ReadCurrentData(1), address=partial), CurrentData)


def test_silence() -> None:
    meter = WaterMeter(ADDRESS)
    other = MeterAddress("00000000000013")
    assert ask(meter, ReadCurrentData(1), address=other) is None
    assert ask(meter, ReadCurrentData(1), meter_type=MeterType.GAS) is None
    # A reply on the line, a frame with a bad checksum, and plain noise.
    assert meter.respond(encode(meter.frame(AddressReply(1))), 0.0) is None
    request = to_frame(ReadCurrentData(1), MeterType.COLD_WATER, meter.meter_address)
    damaged = bytearray(encode(request, preamble=0))
    damaged[-2] ^= 1
    assert meter.respond(bytes(damaged), 0.0) is None
    assert meter.respond(b"\x00\x01", 0.0) is None


def test_unsupported_requests_get_an_error_reply() -> None:
    meter = WaterMeter(ADDRESS)
    history = Frame(
        MeterType.COLD_WATER, meter.meter_address, Function.READ_DATA, bytes.fromhex("D1 20 06")
    )
    answer = meter.respond(encode(history), 0.0)
    assert answer is not None
    assert decode(answer).control == 0xC1
    assert from_frame(decode(answer)) == ErrorReply(Function.READ_DATA, 6, Status(0))
    # Data too short to carry a SER cannot be answered at all.
    short = Frame(MeterType.COLD_WATER, meter.meter_address, Function.READ_DATA, b"\x90")
    assert meter.respond(encode(short), 0.0) is None


def test_di_order_is_per_meter() -> None:
    meter = WaterMeter(ADDRESS, di_order=DiOrder.LOW_FIRST)
    assert isinstance(ask(meter, ReadCurrentData(1), di_order=DiOrder.LOW_FIRST), CurrentData)
    # Asked in the standard order, this meter does not know DI 1F90 and says so.
    refused = ask(meter, ReadCurrentData(1), di_order=DiOrder.HIGH_FIRST)
    assert isinstance(refused, ErrorReply)


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="AA"):
        WaterMeter("AAAAAAAAAAAA12")
    with pytest.raises(ValueError, match="real type"):
        WaterMeter(ADDRESS, meter_type=MeterType.WILDCARD)


def test_a_bus_of_meters_through_the_request_framer() -> None:
    meters = [WaterMeter(f"0000000000{n:04d}") for n in range(1, 4)]
    framer = RequestFramer()
    wire = b"".join(
        encode(to_frame(ReadCurrentData(n), MeterType.COLD_WATER, m.meter_address))
        for n, m in enumerate(meters)
    )
    answers = [
        [m.address for m in meters if m.respond(frame, 0.0) is not None]
        for frame in framer.feed(b"\x00" + wire)
    ]
    assert answers == [[m.address] for m in meters]


@given(st.binary(max_size=80))
def test_fuzz_the_meter_answers_bytes_or_nothing(noise: bytes) -> None:
    answer = WaterMeter(ADDRESS).respond(noise, 0.0)
    if answer is not None:
        assert decode(answer).reply
