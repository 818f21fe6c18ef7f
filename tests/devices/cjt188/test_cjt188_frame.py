"""The CJ/T 188 link frame: hand-checked frames, addresses, BCD, checksum, round trip, fuzz.

No independent CJ/T 188 implementation exists to test against (PROTOCOLS.md §3.1: nothing on
PyPI; one Python 2 script); the hand-checked frames below are the reference, their checksums
recomputed by hand and in PROTOCOLS.md.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.cjt188 import (
    WILDCARD_ADDRESS,
    Cjt188ChecksumError,
    Cjt188Error,
    Frame,
    Function,
    MeterAddress,
    MeterType,
    checksum,
    decode,
    encode,
    from_bcd,
    to_bcd,
)
from devices.errors import ChecksumError
from tests.devices.cjt188.known_frames import CLOSE_VALVE, READ, REPLY
from tests.devices.cjt188.strategies import addresses, frames

METER_12 = MeterAddress("00000000000012")

HAND_CHECKED = [
    (READ, Frame(MeterType.COLD_WATER, METER_12, Function.READ_DATA, bytes.fromhex("90 1F 00"))),
    (
        REPLY,
        Frame(
            MeterType.COLD_WATER,
            METER_12,
            Function.READ_DATA,
            bytes.fromhex("90 1F 00 10 00 10 00 2C 10 00 10 00 2C 00 00 00 00 00 00 00 00 FF"),
            reply=True,
        ),
    ),
    (
        CLOSE_VALVE,
        Frame(MeterType.COLD_WATER, METER_12, Function.WRITE_DATA, bytes.fromhex("A0 17 00 99")),
    ),
]


@pytest.mark.parametrize(("wire", "frame"), HAND_CHECKED)
def test_hand_checked_frames(wire: str, frame: Frame) -> None:
    data = bytes.fromhex(wire)
    assert encode(frame, preamble=0) == data
    assert encode(frame) == b"\xfe\xfe" + data
    assert decode(data) == frame
    assert decode(b"\xfe\xfe\xfe\xfe" + data) == frame
    assert checksum(data[:-2]) == data[-2]


def test_the_reply_is_22_data_bytes() -> None:
    frame = decode(bytes.fromhex(REPLY))
    assert len(frame.data) == 0x16 == 22
    assert frame.control == 0x81


def test_control_codes() -> None:
    assert (
        Frame(MeterType.GAS, METER_12, Function.WRITE_DATA, reply=True, error=True).control == 0xC4
    )
    with pytest.raises(Cjt188Error, match="only a reply"):
        Frame(MeterType.GAS, METER_12, Function.WRITE_DATA, error=True)
    with pytest.raises(Cjt188Error):
        Frame(0x15, METER_12, Function.READ_DATA)  # type: ignore[arg-type]
    with pytest.raises(Cjt188Error):
        Frame(MeterType.GAS, METER_12, 0x02)  # type: ignore[arg-type]
    with pytest.raises(Cjt188Error, match="length byte"):
        Frame(MeterType.GAS, METER_12, Function.WRITE_DATA, bytes(256))
    with pytest.raises(Cjt188Error, match="MeterAddress"):
        Frame(MeterType.GAS, "00000000000012", Function.READ_DATA)  # type: ignore[arg-type]


# --- addresses and BCD ------------------------------------------------------------------------


def test_address_goes_on_the_wire_low_byte_first() -> None:
    address = MeterAddress("12345678901234")
    assert address.to_wire() == bytes.fromhex("34 12 90 78 56 34 12")
    assert MeterAddress.from_wire(address.to_wire()) == address
    assert str(address) == "12345678901234"


def test_wildcards() -> None:
    assert WILDCARD_ADDRESS.to_wire() == b"\xaa" * 7
    assert WILDCARD_ADDRESS.is_wildcard
    assert WILDCARD_ADDRESS.matches(METER_12)
    partial = MeterAddress("aaaaaaaaaa0012")  # lower case is accepted and normalised
    assert partial.digits == "AAAAAAAAAA0012"
    assert partial.matches(METER_12)
    assert not partial.matches(MeterAddress("00000000000013"))
    assert not METER_12.is_wildcard
    assert METER_12.matches(METER_12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0000000000001",
        "000000000000123",
        "0000000000001A",
        "AB000000000000",
        "１２000000000000",
    ],
)
def test_bad_addresses(text: str) -> None:
    with pytest.raises(Cjt188Error):
        MeterAddress(text)


def test_bad_wire_addresses() -> None:
    with pytest.raises(Cjt188Error):
        MeterAddress.from_wire(bytes.fromhex("1A 00 00 00 00 00 00"))
    with pytest.raises(Cjt188Error):
        MeterAddress.from_wire(bytes(6))


def test_bcd() -> None:
    assert to_bcd(100010, 4) == bytes.fromhex("10 00 10 00")
    assert from_bcd(bytes.fromhex("10 00 10 00")) == 100010
    with pytest.raises(Cjt188Error):
        to_bcd(10**8, 4)
    with pytest.raises(Cjt188Error):
        from_bcd(b"\x0a")


@given(st.integers(0, 10**14 - 1))
def test_bcd_round_trip(number: int) -> None:
    assert from_bcd(to_bcd(number, 7)) == number


@given(addresses)
def test_address_round_trip(address: MeterAddress) -> None:
    assert MeterAddress.from_wire(address.to_wire()) == address


# --- whole-frame decoding -----------------------------------------------------------------------


def test_checksum_errors_are_checksum_errors() -> None:
    data = bytearray(bytes.fromhex(READ))
    data[-2] ^= 1
    with pytest.raises(Cjt188ChecksumError) as caught:
        decode(bytes(data))
    assert isinstance(caught.value, ChecksumError)
    assert caught.value.data == bytes(data)


@pytest.mark.parametrize(
    "wire",
    [
        "",
        "FE FE",
        "16",
        READ[:-3],  # no end byte
        READ + " 00",  # trailing byte
        READ.replace("3D 16", "3D 17"),  # wrong end byte
        "68 15 12 00 00 00 00 00 00 01 03 90 1F 00 42 16",  # meter type 15H is unknown
        "68 10 12 00 00 00 00 00 00 02 03 90 1F 00 3E 16",  # function 02H is unknown
        "68 10 12 00 00 00 00 00 00 41 03 90 1F 00 7D 16",  # error flag on a request
        "68 10 1A 00 00 00 00 00 00 01 03 90 1F 00 45 16",  # address byte 1AH is not BCD
    ],
)
def test_decode_refuses_what_is_not_one_frame(wire: str) -> None:
    with pytest.raises(Cjt188Error) as caught:
        decode(bytes.fromhex(wire))
    assert not isinstance(caught.value, Cjt188ChecksumError)  # each fails for its own reason


@given(frames(), st.integers(0, 4))
def test_frame_round_trip(frame: Frame, preamble: int) -> None:
    assert decode(encode(frame, preamble=preamble)) == frame


@given(st.binary(max_size=300))
def test_fuzz_decode_raises_only_cjt188_errors(data: bytes) -> None:
    try:
        frame = decode(data)
    except Cjt188Error:
        return
    assert encode(frame, preamble=0) == data.lstrip(b"\xfe")
