"""Value formats: BCD numbers with sign and decimals, dates, times, words; the identifier table."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.dlt645 import (
    IDENTIFIERS_1997,
    IDENTIFIERS_2007,
    Block,
    Date,
    Digits,
    Dlt645Error,
    MeterType,
    Number,
    Reason,
    Stamp,
    Standard,
    Status3,
    StatusWord3,
    Time,
    Word,
    decode_value,
    encode_value,
    lookup,
)
from tests.devices.dlt645.strategies import nameplates, stamps


def h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize(
    ("di", "wire", "value"),
    [
        (0x00010000, "56 34 12 00", Decimal("1234.56")),  # XXXXXX.XX kWh
        (0x00010000, "99 99 99 99", Decimal("999999.99")),  # unsigned: the top bit is a digit
        (0x00000000, "56 34 12 80", Decimal("-1234.56")),  # combined energy is signed
        (0x02010100, "01 22", Decimal("220.1")),  # XXX.X V
        (0x02020100, "23 51 00", Decimal("5.123")),  # XXX.XXX A
        (0x02020100, "23 51 80", Decimal("-5.123")),  # reverse current: sign bit
        (0x02030000, "34 12 81", Decimal("-1.1234")),  # XX.XXXX kW, signed
        (0x02060000, "00 10", Decimal("1.000")),  # X.XXX
        (0x02060000, "50 88", Decimal("-0.850")),
        (0x02800002, "00 50", Decimal("50.00")),  # XX.XX Hz
        (0x02800020, "83 48 00 00", Decimal("0.4883")),  # XXXX.XXXX yuan/kWh
        (0x00900200, "00 50 01 00", Decimal("150.00")),  # remaining money XXXXXX.XX
        (0x03330201, "12 00", Decimal("12")),  # purchase count XXXX
        (0x0001FF00, "00 01 00 00 00 01 00 00", (Decimal("1.00"), Decimal("1.00"))),
        (0x04000101, "04 01 01 26", dt.date(2026, 1, 1)),  # YYMMDDWW, Thursday
        (0x04000102, "56 34 12", dt.time(12, 34, 56)),  # hhmmss
        (0x04000401, "04 60 07 00 15 00", "001500076004"),
        (0x04000501, "01 80", 0x8001),  # a status word is binary, low byte first
    ],
)
def test_examples(di: int, wire: str, value: Any) -> None:
    assert decode_value(di, h(wire)) == value
    assert encode_value(di, value) == h(wire)


def test_status_word_3() -> None:
    word = decode_value(0x04000503, h("50 02"))
    assert isinstance(word, StatusWord3)
    assert word.relay_open  # bit 4
    assert word.relay_command_open  # bit 6
    assert not word.pre_trip_alarm  # bit 7
    assert word.meter_type is MeterType.MONEY_PREPAID  # bits 8-9 = 10
    assert not word.keep_power
    assert (
        StatusWord3.of(relay_open=True, relay_command_open=True, meter_type=MeterType.MONEY_PREPAID)
        == word
    )
    assert StatusWord3(0x0100).meter_type is MeterType.ENERGY_PREPAID
    assert StatusWord3(0x0080).pre_trip_alarm
    assert StatusWord3(0x1000).keep_power
    assert encode_value(0x04000503, word) == h("50 02")


def test_1997_formats() -> None:
    v97 = Standard.V1997
    assert decode_value(0xB611, h("20 02"), v97) == Decimal(220)  # XXX V, whole volts
    assert decode_value(0xB621, h("12 05"), v97) == Decimal("5.12")  # XX.XX A
    assert decode_value(0x9010, h("56 34 12 00"), v97) == Decimal("1234.56")
    assert decode_value(0xC011, h("05 04 03"), v97) == dt.time(3, 4, 5)
    assert lookup(0x9010, v97).code == "9010"
    assert lookup(0x00010000).code == "00010000"


def test_the_table_covers_the_common_identifiers() -> None:
    wanted_2007 = {
        0x00000000, 0x00010000, 0x00010100, 0x00010200, 0x00010300, 0x00010400, 0x0001FF00,
        0x00020000, 0x02010100, 0x0201FF00, 0x02020100, 0x02030000, 0x02060000, 0x02800002,
        0x04000101, 0x04000102, 0x04000401, 0x04000402, 0x00900100, 0x00900200, 0x00900201,
        0x03330201, 0x04001001, 0x04001002, 0x02800020,
        *range(0x04000501, 0x04000508),
    }  # fmt: skip
    assert wanted_2007 <= set(IDENTIFIERS_2007)
    assert {0x9010, 0x901F, 0xB611, 0xB621, 0xB630, 0xC010, 0xC011} == set(IDENTIFIERS_1997)
    assert all(row.name and row.format.label for row in IDENTIFIERS_2007.values())


@pytest.mark.parametrize(
    ("fmt", "value", "reason"),
    [
        (Number(2, 1), Decimal("1000.0"), Reason.OUT_OF_RANGE),
        (Number(2, 1), Decimal("-1.0"), Reason.OUT_OF_RANGE),  # unsigned
        (Number(3, 3, signed=True), Decimal("800.000"), Reason.OUT_OF_RANGE),  # top bit is sign
        (Number(2, 1), Decimal("220.15"), Reason.OUT_OF_RANGE),  # an encoder never rounds
        (Number(2, 1), Decimal("NaN"), Reason.OUT_OF_RANGE),
        (Number(2, 1), 220.1, Reason.BAD_VALUE),  # never a float
        (Number(2, 1), True, Reason.BAD_VALUE),
        (Block(Number(2, 1), 3), (), Reason.BAD_VALUE),
        (Block(Number(2, 1), 3), (Decimal(1),) * 4, Reason.BAD_VALUE),
        (Date(), dt.date(2100, 1, 1), Reason.BAD_DATE),
        (Date(), dt.datetime(2026, 1, 1), Reason.BAD_VALUE),
        (Time(), dt.time(1, 2, 3, 4), Reason.BAD_VALUE),
        (Stamp(), dt.datetime(1999, 1, 1), Reason.BAD_DATE),
        (Digits(6), "00150007600", Reason.BAD_VALUE),
        (Digits(6), "00150007600a", Reason.BAD_VALUE),
        (Word(2), 1 << 16, Reason.OUT_OF_RANGE),
        (Status3(), 5, Reason.BAD_VALUE),
    ],
)
def test_encoders_refuse(fmt: Any, value: Any, reason: Reason) -> None:
    with pytest.raises(Dlt645Error) as caught:
        fmt.encode(value)
    assert caught.value.reason is reason


@pytest.mark.parametrize(
    ("di", "wire", "reason"),
    [
        (0x00010000, "56 34 12", Reason.BAD_LENGTH),
        (0x00010000, "5a 34 12 00", Reason.BAD_BCD),
        (0x04000101, "07 01 01 26", Reason.BAD_DATE),  # weekday 7
        (0x04000101, "04 30 02 26", Reason.BAD_DATE),  # 30 February
        (0x04000102, "00 60 12", Reason.BAD_DATE),
        (0x0001FF00, "00 01 00", Reason.BAD_LENGTH),
        (0x12345678, "00", Reason.UNKNOWN_IDENTIFIER),
    ],
)
def test_decoders_refuse(di: int, wire: str, reason: Reason) -> None:
    with pytest.raises(Dlt645Error) as caught:
        decode_value(di, h(wire))
    assert caught.value.reason is reason


def test_negative_zero_comes_back_as_zero() -> None:
    assert str(Number(3, 3, signed=True).decode(h("00 00 80"))) == "0.000"


@st.composite
def numbers(draw: st.DrawFn) -> tuple[Number, Decimal]:
    width = draw(st.integers(1, 6))
    fmt = Number(width, draw(st.integers(0, 2 * width)), draw(st.booleans()))
    magnitude = draw(st.integers(0, int(fmt.limit.scaleb(fmt.decimals))))
    sign = -1 if fmt.signed and draw(st.booleans()) and magnitude else 1
    return fmt, Decimal(sign * magnitude).scaleb(-fmt.decimals)


@given(numbers())
def test_number_round_trip(case: tuple[Number, Decimal]) -> None:
    fmt, value = case
    assert fmt.decode(fmt.encode(value)) == value


@given(stamps)
def test_date_time_stamp_round_trip(when: dt.datetime) -> None:
    assert Date().decode(Date().encode(when.date())) == when.date()
    assert Time().decode(Time().encode(when.time())) == when.time()
    assert Stamp().decode(Stamp().encode(when)) == when


@given(nameplates, st.integers(0, 0xFFFF))
def test_digits_and_words_round_trip(plate: str, bits: int) -> None:
    assert Digits(6).decode(Digits(6).encode(plate)) == plate
    assert Word(2).decode(Word(2).encode(bits)) == bits
    assert Status3().decode(Status3().encode(StatusWord3(bits))) == StatusWord3(bits)


ALL_ROWS = [*IDENTIFIERS_2007.values(), *IDENTIFIERS_1997.values()]


@given(st.sampled_from(ALL_ROWS), st.binary(max_size=24))
def test_fuzz_value_decoders_raise_only_their_own_error(row: Any, data: bytes) -> None:
    try:
        value = decode_value(row.di, data, row.standard)
    except Dlt645Error:
        return
    assert decode_value(row.di, encode_value(row.di, value, row.standard), row.standard) == value
