"""The lock-board codec: hand-checked frames, each refusal, round trips, the fuzz invariant."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devices.errors import ChecksumError, FrameError
from devices.lockboard import (
    MAX_FRAME_LENGTH,
    AllBoardsStatus,
    BoardStatus,
    DelayedUnlock,
    Frame,
    LockboardChecksumError,
    LockboardError,
    OpenAll,
    OpenLock,
    PulseTime,
    QueryAllBoards,
    QueryBoard,
    QueryInfrared,
    QueryPulseTime,
    Reason,
    SetBaud,
    SetPulseTime,
    checksum,
    decode,
    encode,
    frame_length,
)
from tests.devices.lockboard.lockboard_strategies import frames


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def status_bits(*numbers: int) -> tuple[bool, ...]:
    return tuple(lock in numbers for lock in range(1, 17))


# --- hand-checked frames (docs/protocol-lockboard.md and the vendor table) ------------------------

HAND_CHECKED: list[tuple[str, Frame]] = [
    ("02 00 30 03 35", QueryBoard(0)),
    ("02 00 31 03 36", OpenLock(0, 1)),
    ("02 1F 31 03 55", OpenLock(1, 16)),
    ("02 F0 32 03 27", QueryAllBoards()),
    ("02 00 33 03 38", OpenAll(0)),
    ("02 00 37 00 3C 03 78", SetPulseTime(0, 600)),
    ("02 00 37 03 3C", QueryPulseTime(0)),
    ("02 00 3A 03 3F", QueryInfrared(0)),
    # Locks 1-2 closed, a parcel in locker 1.
    ("02 00 35 03 00 01 00 03 3E", BoardStatus(0, status_bits(1, 2), status_bits(1))),
    ("02 20 35 FF FF 00 80 03 D8", BoardStatus(2, (True,) * 16, status_bits(16))),
    ("02 32 39 05 03 75", DelayedUnlock(3, 3, 5)),
    ("02 00 40 01 03 46", SetBaud(0, 19200)),
    ("02 00 38 00 3C 03 79", PulseTime(0, 600)),
    # Board 0 and board 1 answering 32H, one frame each (see the docs for the source).
    ("02 00 36 00 00 00 00 03 3B", AllBoardsStatus(0, status_bits(), status_bits())),
    ("02 10 36 00 00 00 00 03 4B", AllBoardsStatus(1, status_bits(), status_bits())),
]


@pytest.mark.parametrize(("wire", "frame"), HAND_CHECKED)
def test_hand_checked_frames_decode_and_encode(wire: str, frame: Frame) -> None:
    assert decode(h(wire)) == frame
    assert encode(frame) == h(wire)


def test_the_sum_is_the_low_byte_of_the_additive_sum() -> None:
    # F0 + 32 + 02 + 03 = 127H: only the low byte travels.
    assert checksum(h("02 F0 32 03")) == 0x27


def test_status_bits_are_little_end_first_lock_one_in_bit_zero() -> None:
    frame = BoardStatus(3, status_bits(1, 9, 16), status_bits(8, 10))
    assert encode(frame)[1:7] == h("30 35 01 81 80 02")
    assert frame.hook_closed(9)
    assert not frame.hook_closed(2)
    assert frame.occupied(10)
    assert not frame.occupied(9)


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (SetPulseTime(2, 10), "02 20 37 00 01 03 5D"),
        (SetPulseTime(0, 5000), "02 00 37 01 F4 03 31"),
        (PulseTime(0, 655350), "02 00 38 FF FF 03 3B"),
        (DelayedUnlock(0, 3, 250), "02 02 39 FA 03 3A"),
        (SetBaud(0, 9600), "02 00 40 00 03 45"),
        (SetBaud(15, 115200), "02 F0 40 03 03 38"),
    ],
)
def test_more_frames_encode_as_computed_by_hand(frame: Frame, wire: str) -> None:
    assert encode(frame) == h(wire)
    assert decode(h(wire)) == frame


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("", Reason.INCOMPLETE),
        ("02 00 30 03", Reason.INCOMPLETE),
        ("02 00 35 03 00 01 00 03", Reason.INCOMPLETE),
        ("02 00 30 03 35 00", Reason.TRAILING_DATA),
        ("03 00 30 03 35", Reason.NO_STX),
        ("02 00 34 03 39", Reason.UNKNOWN_COMMAND),
        ("02 00 30 04 36", Reason.NO_ETX),
        ("02 00 30 03 36", Reason.BAD_CHECKSUM),
        ("02 00 32 03 37", Reason.BAD_ADDRESS),
        ("02 00 40 04 03 49", Reason.OUT_OF_RANGE),
        ("02 00 37 00 00 03 3C", Reason.OUT_OF_RANGE),
        ("02 00 37 01 F5 03 32", Reason.OUT_OF_RANGE),
        ("02 00 39 FB 03 39", Reason.OUT_OF_RANGE),
    ],
)
def test_each_refusal_has_its_reason(wire: str, reason: Reason) -> None:
    with pytest.raises(LockboardError) as caught:
        decode(h(wire))
    assert caught.value.reason is reason
    assert caught.value.data == h(wire)[:64]


def test_a_bad_sum_is_a_checksum_error_of_the_device_family() -> None:
    with pytest.raises(LockboardChecksumError) as caught:
        decode(h("02 00 31 03 37"))
    assert isinstance(caught.value, ChecksumError)
    assert isinstance(caught.value, FrameError)
    assert str(caught.value).startswith("bad_checksum")


def test_the_lock_nibble_of_a_board_wide_frame_is_ignored_when_decoding() -> None:
    wire = bytes([0x02, 0x05, 0x30, 0x03, 0x3A])
    assert decode(wire) == QueryBoard(0)
    assert encode(QueryBoard(0)) == h("02 00 30 03 35")


def test_a_37h_set_whose_high_byte_is_03_reads_as_the_query_when_the_sum_allows() -> None:
    # 02 00 37 03 3C is the query; a set of 033CH units would continue with 03 7B. The shorter
    # reading wins, which is why MAX_PULSE_MS keeps every set's high byte below 03.
    assert frame_length(h("02 00 37 03 3C 03 7B")) == 5
    assert frame_length(h("02 00 37 02 3C 03 7A")) == 7


def test_frame_length_asks_for_more_only_while_a_frame_is_still_possible() -> None:
    assert frame_length(b"") == 0
    assert frame_length(h("02 00")) == 0
    assert frame_length(h("02 00 35 03 00 01 00")) == 0
    with pytest.raises(LockboardError) as caught:
        # A status frame needs ETX at offset 7; 30 there settles it without waiting for byte 8.
        frame_length(h("02 00 35 02 00 30 03 30"))
    assert caught.value.reason is Reason.NO_ETX


@pytest.mark.parametrize(
    "build",
    [
        lambda: QueryBoard(16),
        lambda: QueryBoard(-1),
        lambda: QueryBoard(True),
        lambda: OpenLock(0, 0),
        lambda: OpenLock(0, 17),
        lambda: SetPulseTime(0, 0),
        lambda: SetPulseTime(0, 605),
        lambda: SetPulseTime(0, 5010),
        lambda: PulseTime(0, -10),
        lambda: DelayedUnlock(0, 1, 251),
        lambda: DelayedUnlock(0, 1, -1),
        lambda: SetBaud(0, 38400),
        lambda: BoardStatus(0, (True,) * 15, (False,) * 16),
        lambda: BoardStatus(0, (True,) * 16, (0,) * 16),  # type: ignore[arg-type]
        lambda: AllBoardsStatus(0, [True] * 16, (False,) * 16),  # type: ignore[arg-type]
    ],
)
def test_invalid_frames_cannot_be_built(build: object) -> None:
    assert callable(build)
    with pytest.raises(LockboardError) as caught:
        build()
    assert caught.value.reason is Reason.OUT_OF_RANGE


def test_status_accessors_refuse_lock_numbers_outside_1_to_16() -> None:
    status = BoardStatus(0, status_bits(), status_bits())
    with pytest.raises(LockboardError):
        status.hook_closed(0)
    with pytest.raises(LockboardError):
        status.occupied(17)


# --- properties -------------------------------------------------------------------------------


@given(frames)
def test_round_trip(frame: Frame) -> None:
    wire = encode(frame)
    assert decode(wire) == frame
    assert len(wire) <= MAX_FRAME_LENGTH
    assert wire[-1] == checksum(wire[:-1])


@given(frames, st.integers(0, 10), st.integers(1, 255))
def test_every_single_byte_error_is_caught(frame: Frame, position: int, flip: int) -> None:
    # An additive SUM changes with any one changed byte; a changed STX, CMD or ETX breaks the
    # shape instead. Either way decode refuses: no single corrupted byte reads as a valid frame.
    wire = bytearray(encode(frame))
    wire[position % len(wire)] ^= flip
    with pytest.raises(LockboardError):
        decode(wire)


@given(st.binary(max_size=64))
@example(h("02 00 37 03 3C 03 7B"))
@example(h("02 F0 40 FF 03 34"))
@example(h("02 00 38 03"))
def test_fuzz_random_bytes_decode_or_raise_lockboard_error(data: bytes) -> None:
    try:
        frame = decode(data)
    except LockboardError:
        return
    # Whatever decodes is a real frame: re-encoding gives the same bytes up to the lock nibble.
    again = encode(frame)
    assert len(again) == len(data)
    assert decode(again) == frame
