"""The DL/T 645 codec against hand-checked frames, and its refusals.

The frames come from PROTOCOLS.md §1: a capture from a public page (meter 001500076004) and the
`dlt645` package's round trip (address string "123456781012", i.e. nameplate 121078563412).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from devices.dlt645 import (
    BROADCAST,
    WILDCARD,
    Address,
    Dlt645ChecksumError,
    Dlt645Error,
    ErrorFlags,
    ErrorReply,
    FollowUpReply,
    Frame,
    RawFrame,
    ReadAddressReply,
    ReadAddressRequest,
    ReadFollowUp,
    ReadReply,
    ReadRequest,
    Reason,
    RelayAction,
    RelayControl,
    RelayReply,
    Standard,
    TimeSync,
    WriteReply,
    WriteRequest,
    control_of,
    decode,
    encode,
)
from devices.errors import ChecksumError, DeviceError, FrameError


def h(text: str) -> bytes:
    return bytes.fromhex(text)


PLATE = Address("001500076004")
PEER = Address("121078563412")

# (wire bytes, frame, preamble): each decodes to the frame and the frame encodes to the bytes.
HAND_CHECKED: list[tuple[str, Frame, int]] = [
    # A real frame from a public capture: read 00010000 from meter 001500076004 ...
    ("68 04 60 07 00 15 00 68 11 04 33 33 34 33 32 16", ReadRequest(PLATE, 0x00010000), 0),
    # ... and the dlt645 meter simulator's answer, 1234.56 kWh.
    (
        "68 04 60 07 00 15 00 68 91 08 33 33 34 33 89 67 45 33 1e 16",
        ReadReply(PLATE, 0x00010000, h("56 34 12 00")),
        0,
    ),
    # 13H read address, to the wildcard, and the meter's answer (dlt645 round trip).
    ("fe fe fe fe 68 aa aa aa aa aa aa 68 13 00 df 16", ReadAddressRequest(), 4),
    (
        "fe fe fe fe 68 12 34 56 78 10 12 68 93 06 45 67 89 ab 43 45 07 16",
        ReadAddressReply(PEER),
        4,
    ),
    ("fe fe fe fe 68 12 34 56 78 10 12 68 11 04 33 33 34 33 e8 16", ReadRequest(PEER, 0x10000), 4),
    (
        "fe fe fe fe 68 12 34 56 78 10 12 68 91 08 33 33 34 33 89 67 45 33 d4 16",
        ReadReply(PEER, 0x00010000, h("56 34 12 00")),
        4,
    ),
    # Voltage A 220.1 V (01 22) and current A 5.123 A (23 51 00).
    (
        "68 12 34 56 78 10 12 68 91 06 33 34 34 35 34 55 f6 16",
        ReadReply(PEER, 0x02010100, h("01 22")),
        0,
    ),
    (
        "68 12 34 56 78 10 12 68 91 07 33 34 35 35 56 84 33 7c 16",
        ReadReply(PEER, 0x02020100, h("23 51 00")),
        0,
    ),
    # An unknown identifier: D1 01 35, ERR 02 (no requested data).
    ("68 12 34 56 78 10 12 68 d1 01 35 0d 16", ErrorReply(PEER, 0x11, ErrorFlags.NO_DATA), 0),
    # 14H write 04000101 = 25-12-09 weekday 01, password 00 123456, operator 00000000; 94H reply.
    (
        "68 12 34 56 78 10 12 68 14 10 34 34 33 37 33 45 67 89 33 33 33 33 34 3c 45 58 3d 16",
        WriteRequest(PEER, 0x04000101, h("01 09 12 25"), "00123456"),
        0,
    ),
    ("68 12 34 56 78 10 12 68 94 00 9a 16", WriteReply(PEER), 0),
]


@pytest.mark.parametrize(("wire", "frame", "preamble"), HAND_CHECKED)
def test_hand_checked_frames(wire: str, frame: Frame, preamble: int) -> None:
    assert decode(h(wire)) == frame
    assert encode(frame, preamble=preamble) == h(wire)


def test_the_captured_read_decodes_to_its_meaning() -> None:
    reply = decode(h("68 04 60 07 00 15 00 68 91 08 33 33 34 33 89 67 45 33 1e 16"))
    assert isinstance(reply, ReadReply)
    assert reply.address.nameplate == "001500076004"
    assert reply.address.wire == h("04 60 07 00 15 00")
    assert reply.value == Decimal("1234.56")
    assert ReadReply.of(PLATE, 0x00010000, Decimal("1234.56")) == reply


def test_time_sync_sends_seconds_first() -> None:
    frame = TimeSync(dt.datetime(2025, 1, 2, 3, 4, 5))
    wire = encode(frame)
    # ss mm hh DD MM YY = 05 04 03 02 01 25, each +33H, to 99 99 99 99 99 99, no reply expected.
    assert wire == h("68 99 99 99 99 99 99 68 08 06 38 37 36 35 34 58") + wire[-2:]
    assert wire[-1] == 0x16
    assert decode(wire) == frame


def test_relay_control_layout() -> None:
    deadline = dt.datetime(2026, 3, 4, 5, 6, 7)
    frame = RelayControl(PLATE, RelayAction.TRIP, deadline, "02123456", "01020304")
    wire = encode(frame)
    # PA P0 P1 P2, C0..C3, N1 = 1A, N2 = 00, N3..N8 = ss mm hh DD MM YY; each byte +33H.
    plain = h("02 12 34 56 01 02 03 04 1a 00 07 06 05 04 03 26")
    assert wire[8:10] == h("1c 10")
    assert wire[10:26] == bytes((b + 0x33) & 0xFF for b in plain)
    assert decode(wire) == frame
    assert decode(encode(RelayReply(PLATE))) == RelayReply(PLATE)
    assert encode(ErrorReply(PLATE, 0x1C, ErrorFlags.UNAUTHORISED))[8:11] == h("dc 01 37")


@pytest.mark.parametrize(
    ("frame", "control"),
    [
        (ReadRequest(PLATE, 0x9010, Standard.V1997), 0x01),
        (ReadReply(PLATE, 0x9010, b"", Standard.V1997), 0x81),
        (ReadReply(PLATE, 0x9010, b"", Standard.V1997, follows=True), 0xA1),
        (ReadReply(PLATE, 0x10000, b"", follows=True), 0xB1),
        (ReadFollowUp(PLATE, 0x10000, 1), 0x12),
        (ReadFollowUp(PLATE, 0x901F, 0, Standard.V1997), 0x02),
        (FollowUpReply(PLATE, 0x10000, b"", 1), 0x92),
        (FollowUpReply(PLATE, 0x10000, b"", 2, follows=True), 0xB2),
        (FollowUpReply(PLATE, 0x901F, b"", 0, Standard.V1997), 0x82),
        (WriteRequest(PLATE, 0xC011, b"", "02123456", standard=Standard.V1997), 0x04),
        (WriteReply(PLATE, Standard.V1997), 0x84),
        (ErrorReply(PLATE, 0x01, ErrorFlags.NO_DATA), 0xC1),
        (RelayControl(PLATE, RelayAction.CLOSE, dt.datetime(2030, 1, 1), "02123456"), 0x1C),
        (RawFrame(PLATE, 0x16, h("00 00 99 99")), 0x16),
    ],
)
def test_control_codes(frame: Frame, control: int) -> None:
    assert control_of(frame) == control
    assert decode(encode(frame)) == frame


def test_1997_frames_carry_two_byte_identifiers() -> None:
    read = encode(ReadRequest(PLATE, 0x9010, Standard.V1997))
    assert read[8:12] == h("01 02 43 c3")  # 10 90, +33H
    write = WriteRequest(PLATE, 0xC011, h("00 00 12"), "02123456", standard=Standard.V1997)
    assert encode(write)[9] == 2 + 4 + 3  # DI, PA P0 P1 P2, data: no operator code
    reply = ReadReply.of(PLATE, 0xB611, Decimal(220), standard=Standard.V1997)
    assert reply.data == h("20 02")
    assert decode(encode(reply)) == reply


def test_error_flags_decode_bit_by_bit() -> None:
    reply = decode(encode(ErrorReply(PLATE, 0x14, ErrorFlags(0b0111_1111))))
    assert isinstance(reply, ErrorReply)
    assert set(reply.errors) == {
        ErrorFlags.OTHER,
        ErrorFlags.NO_DATA,
        ErrorFlags.UNAUTHORISED,
        ErrorFlags.BAUD_RATE,
        ErrorFlags.YEAR_ZONES,
        ErrorFlags.DAY_SLOTS,
        ErrorFlags.TARIFFS,
    }
    assert ErrorReply(PLATE, 0x11, ErrorFlags(0x80)).errors == 0x80  # reserved bit kept


def test_addresses() -> None:
    assert Address.from_wire(h("04 60 07 00 15 00")) == PLATE
    assert str(PLATE) == "001500076004"
    assert BROADCAST.is_broadcast
    assert BROADCAST.wire == b"\x99" * 6
    assert WILDCARD.is_wildcard
    assert WILDCARD.wire == b"\xaa" * 6
    assert WILDCARD.reaches(PLATE)
    assert Address("AAAA00076004").reaches(PLATE)  # AA-padded high bytes
    assert Address("AAAA00076004").wire == h("04 60 07 00 aa aa")
    assert not Address("AAAA00076005").reaches(PLATE)
    assert not BROADCAST.reaches(PLATE)  # meters listen to broadcasts, but never answer them
    for bad in ["00150007600", "0015000760041", "00150007600A", "aaaa00076004", "A0AA00076004"]:
        with pytest.raises(Dlt645Error) as caught:
            Address(bad)
        assert caught.value.reason is Reason.BAD_ADDRESS
    with pytest.raises(Dlt645Error):
        Address.from_wire(h("04 60 07 00 15 0a"))


def test_errors_are_device_errors() -> None:
    with pytest.raises(Dlt645ChecksumError) as caught:
        decode(h("68 04 60 07 00 15 00 68 11 04 33 33 34 33 33 16"))
    error = caught.value
    assert isinstance(error, ChecksumError)
    assert isinstance(error, FrameError)
    assert isinstance(error, DeviceError)
    assert isinstance(error, ValueError)
    assert error.reason is Reason.BAD_CHECKSUM
    assert error.data.startswith(h("68 04 60"))


GOOD = "68 04 60 07 00 15 00 68 11 04 33 33 34 33 32 16"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("", Reason.TRUNCATED),
        ("68 04 60 07 00 15 00 68 11 04 33 33 34 33 32", Reason.TRUNCATED),
        ("fe fe fe fe fe " + GOOD, Reason.NO_START),
        ("00 " + GOOD, Reason.NO_START),
        (GOOD + " 00", Reason.TRAILING_DATA),
        ("68 04 60 07 00 15 00 67 11 04 33 33 34 33 31 16", Reason.NO_START),
        ("68 04 60 07 00 15 0a 68 11 04 33 33 34 33 3c 16", Reason.BAD_ADDRESS),
        ("68 04 60 07 00 15 00 68 11 04 33 33 34 33 32 17", Reason.NO_END),
        ("68 04 60 07 00 15 00 68 11 04 33 33 34 33 33 16", Reason.BAD_CHECKSUM),
        ("68 04 60 07 00 15 00 68 11 c9" + " 33" * 201 + " 00 16", Reason.TOO_LONG),
        # A read with a 3-byte DI, a write without its codes, an error reply without ERR.
        ("68 04 60 07 00 15 00 68 11 03 33 33 34 fe 16", Reason.BAD_LENGTH),
        ("68 04 60 07 00 15 00 68 14 04 33 33 34 33 35 16", Reason.BAD_LENGTH),
        ("68 04 60 07 00 15 00 68 d1 00 f1 16", Reason.BAD_LENGTH),
        # A time sync on 2025-02-30.
        ("68 99 99 99 99 99 99 68 08 06 33 33 33 63 35 58 91 16", Reason.BAD_DATE),
        # A time sync with a nibble above 9.
        ("68 99 99 99 99 99 99 68 08 06 3d 33 33 34 34 58 8c 16", Reason.BAD_BCD),
    ],
)
def test_decode_refuses(wire: str, reason: Reason) -> None:
    data = h(wire)
    if reason not in (Reason.TRUNCATED, Reason.NO_START, Reason.BAD_CHECKSUM, Reason.TOO_LONG):
        data = _fix_checksum(data)
    with pytest.raises(Dlt645Error) as caught:
        decode(data)
    assert caught.value.reason is reason


def _fix_checksum(data: bytes) -> bytes:
    """Make the checksum right, so that the refusal tested is the intended one."""
    body = data[:-2]
    start = body.index(0x68)
    return body + bytes([sum(body[start:]) & 0xFF]) + data[-1:]


def test_relay_control_with_ciphertext_does_not_decode() -> None:
    frame = RelayControl(PLATE, RelayAction.TRIP, dt.datetime(2030, 1, 1), "98000000")
    wire = bytearray(encode(frame))
    wire[18] = (0x77 + 0x33) & 0xFF  # N1 is ciphertext, not an order
    with pytest.raises(Dlt645Error) as caught:
        decode(_fix_checksum(bytes(wire)))
    assert caught.value.reason is Reason.BAD_FIELD


@pytest.mark.parametrize(
    "build",
    [
        lambda: ReadRequest(PLATE, 1 << 32),
        lambda: ReadRequest(PLATE, 0x10000, Standard.V1997),
        lambda: ReadRequest(PLATE, 0x9010, Standard.V1997, b"\x01"),
        lambda: ReadRequest(PLATE, 0x10000, extra=b"\x01\x02"),
        lambda: ReadRequest("001500076004", 0x10000),  # type: ignore[arg-type]
        lambda: ReadReply(PLATE, 0x10000, b"\x00" * 197),
        lambda: ReadFollowUp(PLATE, 0x10000, 256),
        lambda: ReadFollowUp(PLATE, 0x9010, 1, Standard.V1997),
        lambda: WriteRequest(PLATE, 0x10000, b"", "0212345"),
        lambda: WriteRequest(PLATE, 0x10000, b"", "0212345g"),
        lambda: WriteRequest(PLATE, 0x10000, b"", "02123456", "0000000a"),
        lambda: WriteRequest(PLATE, 0x9010, b"", "02123456", "00000001", Standard.V1997),
        lambda: TimeSync(dt.datetime(1999, 12, 31, 23, 59, 59)),
        lambda: TimeSync(dt.datetime(2025, 1, 1, 0, 0, 0, 5)),
        lambda: TimeSync(dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
        lambda: RelayControl(PLATE, 0x1A, dt.datetime(2030, 1, 1), "02123456"),  # type: ignore[arg-type]
        lambda: ErrorReply(PLATE, 0x20, ErrorFlags.OTHER),
        lambda: ErrorReply(PLATE, 0x11, 2),  # type: ignore[arg-type]
        lambda: RawFrame(PLATE, 0x11, h("33 33 34 33")),
        lambda: RawFrame(PLATE, 0x16, b"\x00" * 201),
        lambda: encode(ReadAddressRequest(), preamble=5),
    ],
)
def test_invalid_frames_cannot_be_built(build: object) -> None:
    assert callable(build)
    with pytest.raises(Dlt645Error):
        build()


def test_unmodelled_functions_are_raw_frames() -> None:
    freeze = h("68 99 99 99 99 99 99 68 16 04 cc cc cc cc")
    wire = freeze + bytes([sum(freeze) & 0xFF, 0x16])
    frame = decode(wire)
    assert frame == RawFrame(BROADCAST, 0x16, h("99 99 99 99"))
    assert encode(frame) == wire
