"""What CJ/T 188 data means: the 901F payload, DI byte order, valve control, error replies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.cjt188 import (
    AddressReply,
    Cjt188Error,
    CurrentData,
    DataId,
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
    Status,
    Unit,
    UnsupportedDataError,
    ValveAction,
    ValveControl,
    ValveReply,
    ValveState,
    decode,
    encode,
    from_frame,
    to_frame,
)
from tests.devices.cjt188.known_frames import CLOSE_VALVE, READ, REPLY
from tests.devices.cjt188.strategies import messages, meter_types, plain_addresses, water_types

METER_12 = MeterAddress("00000000000012")
COLD = MeterType.COLD_WATER


def test_the_hand_checked_read_and_its_reply() -> None:
    assert from_frame(decode(bytes.fromhex(READ))) == ReadCurrentData(ser=0)
    reply = from_frame(decode(bytes.fromhex(REPLY)))
    assert reply == CurrentData(
        ser=0,
        current=Quantity(Decimal("1000.10"), Unit.M3),
        settlement=Quantity(Decimal("1000.10"), Unit.M3),
        clock=None,  # all zeros: the meter has no clock
        status=Status(0xFF00),
    )
    assert isinstance(reply, CurrentData)
    assert reply.status.valve is ValveState.OPEN
    assert not reply.status.battery_low
    wire = encode(to_frame(reply, COLD, METER_12), preamble=0)
    assert wire == bytes.fromhex(REPLY)


def test_the_hand_checked_valve_close() -> None:
    message = ValveControl(ser=0, action=ValveAction.CLOSE)
    assert from_frame(decode(bytes.fromhex(CLOSE_VALVE))) == message
    assert encode(to_frame(message, COLD, METER_12), preamble=0) == bytes.fromhex(CLOSE_VALVE)


def test_valve_reply_with_and_without_status() -> None:
    closed = Status.of(ValveState.CLOSED, battery_low=True)
    frame = to_frame(ValveReply(7, closed), COLD, METER_12)
    assert frame.data == bytes.fromhex("A0 17 07 05 00")
    assert frame.control == 0x84
    assert from_frame(frame) == ValveReply(7, closed)
    bare = Frame(COLD, METER_12, Function.WRITE_DATA, bytes.fromhex("A0 17 07"), reply=True)
    assert from_frame(bare) == ValveReply(7, None)


def test_di_byte_order_is_a_setting() -> None:
    swapped = to_frame(ReadCurrentData(3), COLD, METER_12, di_order=DiOrder.LOW_FIRST)
    assert swapped.data == bytes.fromhex("1F 90 03")
    assert from_frame(swapped, di_order=DiOrder.LOW_FIRST) == ReadCurrentData(3)
    # Read with the wrong order, 1F90 is a DI nobody knows: refused, not misread.
    with pytest.raises(UnsupportedDataError) as caught:
        from_frame(swapped)
    assert (caught.value.di, caught.value.ser) == (0x1F90, 3)
    valve = to_frame(ValveControl(1, ValveAction.OPEN), COLD, METER_12, di_order=DiOrder.LOW_FIRST)
    assert valve.data == bytes.fromhex("17 A0 01 55")


def test_read_address_to_the_wildcard() -> None:
    wildcard = MeterAddress("AAAAAAAAAAAAAA")
    frame = to_frame(ReadAddress(5), MeterType.WILDCARD, wildcard)
    wire = "68 AA AA AA AA AA AA AA AA 03 03 81 0A 05 4E 16"  # CS checked by hand
    assert encode(frame, preamble=0) == bytes.fromhex(wire)
    reply = to_frame(AddressReply(5), COLD, METER_12)
    assert reply.control == 0x83
    assert from_frame(reply) == AddressReply(5)


def test_error_replies() -> None:
    frame = to_frame(ErrorReply(Function.READ_DATA, 9, Status(0x0003)), COLD, METER_12)
    assert (frame.control, frame.data) == (0xC1, bytes.fromhex("09 03 00"))
    assert from_frame(frame) == ErrorReply(Function.READ_DATA, 9, Status(3))
    # Some vendors put the DI in front: DI SER ST.
    with_di = Frame(
        COLD, METER_12, Function.WRITE_DATA, bytes.fromhex("A0 17 09 01 00"), True, True
    )
    assert from_frame(with_di) == ErrorReply(Function.WRITE_DATA, 9, Status(1))
    with pytest.raises(Cjt188Error):
        from_frame(Frame(COLD, METER_12, Function.READ_DATA, b"\x09", True, True))


def test_clock_and_units() -> None:
    moment = datetime(2024, 3, 9, 17, 45, 30)
    data = CurrentData(1, Quantity(Decimal("12.5"), Unit.L), Quantity(Decimal(0)), moment, Status())
    frame = to_frame(data, MeterType.GAS, METER_12)
    assert frame.data[3:8] == bytes.fromhex("50 12 00 00 29")
    assert frame.data[13:20] == bytes.fromhex("30 45 17 09 03 24 20")
    assert from_frame(frame) == data


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("10 00 10 00 2D", "unit byte"),  # unknown unit
        ("1A 00 10 00 2C", "BCD"),
    ],
)
def test_malformed_flows(payload: str, error: str) -> None:
    good = bytes.fromhex(REPLY)
    data = decode(good).data[:3] + bytes.fromhex(payload) + decode(good).data[8:]
    with pytest.raises(Cjt188Error, match=error):
        from_frame(Frame(COLD, METER_12, Function.READ_DATA, data, reply=True))


def test_malformed_clock() -> None:
    data = decode(bytes.fromhex(REPLY)).data
    bad_date = data[:13] + bytes.fromhex("00 00 00 31 02 24 20") + data[20:]  # 31 February
    with pytest.raises(Cjt188Error, match="date"):
        from_frame(Frame(COLD, METER_12, Function.READ_DATA, bad_date, reply=True))


def test_heat_meter_901f_is_not_read_as_water() -> None:
    data = decode(bytes.fromhex(REPLY)).data
    with pytest.raises(UnsupportedDataError):
        from_frame(Frame(MeterType.HEAT_HEATING, METER_12, Function.READ_DATA, data, reply=True))


@pytest.mark.parametrize(
    ("function", "data"),
    [
        (Function.READ_DATA, "D1 20 04"),  # history: known by name, no message
        (Function.READ_DATA, "90 1F 04 00"),  # 901F request with extra bytes
        (Function.WRITE_DATA, "A0 17 04 77"),  # "half open": not a standard action
        (Function.WRITE_DATA, "A0 15 04 00 00 00 01 01 24 20"),  # write time
        (Function.READ_KEY_VERSION, "81 06 04"),
        (Function.READ_ADDRESS, "90 1F 04"),
    ],
)
def test_unsupported_requests_carry_their_ser(function: Function, data: str) -> None:
    with pytest.raises(UnsupportedDataError) as caught:
        from_frame(Frame(COLD, METER_12, function, bytes.fromhex(data)))
    assert caught.value.ser == 4
    assert caught.value.function == function


def test_short_data_is_malformed() -> None:
    with pytest.raises(Cjt188Error):
        from_frame(Frame(COLD, METER_12, Function.READ_DATA, b"\x90\x1f"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReadCurrentData(256),
        lambda: ValveReply(-1),
        lambda: Quantity(Decimal("0.001")),
        lambda: Quantity(Decimal("1000000")),
        lambda: Quantity(Decimal(-1)),
        lambda: Quantity(Decimal("NaN")),
        lambda: Quantity(Decimal(1), 0x77),  # type: ignore[arg-type]
        lambda: Status(0x10000),
        lambda: ValveControl(0, 0x77),  # type: ignore[arg-type]
        lambda: ErrorReply(0x02, 0),  # type: ignore[arg-type]
        lambda: CurrentData(
            0,
            Quantity(Decimal(0)),
            Quantity(Decimal(0)),
            datetime(2024, 1, 1, microsecond=5),
            Status(),
        ),
    ],
)
def test_invalid_messages_cannot_exist(make: object) -> None:
    assert callable(make)
    with pytest.raises(Cjt188Error):
        make()


def test_data_ids_are_named() -> None:
    assert DataId(0x901F) is DataId.CURRENT_DATA
    assert DataId(0xA017) is DataId.VALVE_CONTROL
    assert DataId(0x810A) is DataId.ADDRESS


@given(
    messages,
    water_types,
    plain_addresses,
    st.sampled_from(list(DiOrder)),
)
def test_message_round_trip_through_bytes(
    message: Message, meter_type: MeterType, address: MeterAddress, order: DiOrder
) -> None:
    wire = encode(to_frame(message, meter_type, address, di_order=order))
    frame = decode(wire)
    assert (frame.meter_type, frame.address) == (meter_type, address)
    assert from_frame(frame, di_order=order) == message


@given(
    meter_types,
    plain_addresses,
    st.sampled_from(list(Function)),
    st.binary(max_size=40),
    st.booleans(),
    st.booleans(),
)
def test_fuzz_from_frame_raises_only_cjt188_errors(
    meter_type: MeterType,
    address: MeterAddress,
    function: Function,
    data: bytes,
    reply: bool,
    error: bool,
) -> None:
    frame = Frame(meter_type, address, function, data, reply, reply and error)
    try:
        message = from_frame(frame)
    except Cjt188Error:
        return
    assert from_frame(to_frame(message, meter_type, address)) == message
