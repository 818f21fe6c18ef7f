"""Bytes ↔ typed frames for the lock board, one frame at a time (sans-I/O).

    02 (STX) | ADDR | CMD | DATA (0, 1, 2 or 4 bytes) | 03 (ETX) | SUM

SUM is the 8-bit sum of every byte before it, STX and ETX included. ADDR is ``board << 4 |
(lock - 1)``; frames that address a whole board carry 0 in the low nibble, and 32H goes to F0H.

* `encode(frame)` gives the frame's bytes.
* `decode(data)` takes exactly one frame and returns it, or raises `LockboardError` (checksum
  failures as `LockboardChecksumError`) — nothing else, whatever the bytes.
* `frame_length(buffer, start)` is the shape check that the stream decoder in
  `devices.lockboard.framing` hunts with.

The length of DATA follows from CMD alone, except for 37H, which is a query without data and a set
with two. The shorter reading is tried first: ``02 ADDR 37 03 SUM`` is the query. A set frame could
only look like that if its high byte were 03H, and `MAX_PULSE_MS` keeps it below.

Leniency, deliberately: on frames that address a whole board (30H, 33H, 35H-38H, 3AH, 40H) the low
nibble of ADDR is ignored when decoding — a board is selected by the high nibble, and firmware that
echoes a lock index in a reply must not make the gateway think the board is silent. We always
encode 0 there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, assert_never

from devices.lockboard.errors import LockboardChecksumError, LockboardError, Reason
from devices.lockboard.frames import (
    BAUD_RATES,
    LOCKS,
    PULSE_UNIT_MS,
    AllBoardsStatus,
    BoardStatus,
    Command,
    DelayedUnlock,
    Frame,
    OpenAll,
    OpenLock,
    PulseTime,
    QueryAllBoards,
    QueryBoard,
    QueryInfrared,
    QueryPulseTime,
    SetBaud,
    SetPulseTime,
)

__all__ = [
    "ALL_BOARDS",
    "ETX",
    "MAX_FRAME_LENGTH",
    "MIN_FRAME_LENGTH",
    "STX",
    "checksum",
    "decode",
    "encode",
    "frame_length",
    "parse",
]

STX: Final = 0x02
ETX: Final = 0x03
ALL_BOARDS: Final = 0xF0
"""The ADDR of 32H: every board on the bus."""

_OVERHEAD: Final = 5  # STX, ADDR, CMD, ETX, SUM

# DATA lengths per CMD, shortest first (the order `frame_length` tries them in).
_DATA_LENGTHS: Final[dict[int, tuple[int, ...]]] = {
    Command.QUERY_BOARD: (0,),
    Command.OPEN_LOCK: (0,),
    Command.QUERY_ALL: (0,),
    Command.OPEN_ALL: (0,),
    Command.BOARD_STATUS: (4,),
    Command.ALL_STATUS: (4,),
    Command.PULSE_TIME: (0, 2),
    Command.PULSE_TIME_REPLY: (2,),
    Command.DELAYED_UNLOCK: (1,),
    Command.QUERY_INFRARED: (0,),
    Command.SET_BAUD: (1,),
}

MIN_FRAME_LENGTH: Final = _OVERHEAD
MAX_FRAME_LENGTH: Final = _OVERHEAD + max(max(lengths) for lengths in _DATA_LENGTHS.values())
"""The longest frame (a 35H/36H status): nothing longer is ever buffered while hunting."""


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The 8-bit additive sum the SUM byte carries."""
    return sum(data) & 0xFF


def frame_length(buffer: Sequence[int], start: int = 0) -> int:
    """How long the frame at ``buffer[start]`` is: 0 if more bytes are needed to tell.

    Checks the shape only — STX, a known CMD, ETX where the CMD puts it, and SUM — and looks at
    no byte past the frame's end. Raises `LockboardError` (`LockboardChecksumError` for a bad SUM)
    as soon as the bytes present cannot begin a frame, so a hunting decoder can move on without
    waiting for bytes that would not help.
    """
    end = len(buffer)
    if start >= end:
        return 0
    if buffer[start] != STX:
        raise LockboardError(Reason.NO_STX, f"first byte is {buffer[start]:02X}H, not 02H")
    if end - start < 3:
        return 0
    command = buffer[start + 2]
    lengths = _DATA_LENGTHS.get(command)
    if lengths is None:
        raise LockboardError(Reason.UNKNOWN_COMMAND, f"CMD {command:02X}H")
    bad_sum = False
    for data_length in lengths:
        etx_at = start + 3 + data_length
        if etx_at >= end:
            return 0
        if buffer[etx_at] != ETX:
            continue
        if etx_at + 1 >= end:
            return 0
        if buffer[etx_at + 1] == sum(buffer[start : etx_at + 1]) & 0xFF:
            return data_length + _OVERHEAD
        bad_sum = True
    if bad_sum:
        raise LockboardChecksumError(f"CMD {command:02X}H")
    raise LockboardError(Reason.NO_ETX, f"CMD {command:02X}H")


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Exactly one frame from `data`, or `LockboardError`."""
    raw = bytes(data)
    try:
        length = frame_length(raw)
    except LockboardError as exc:
        exc.data = raw[:64]
        raise
    if length == 0:
        raise LockboardError(Reason.INCOMPLETE, f"{len(raw)} bytes", data=raw)
    if length != len(raw):
        raise LockboardError(
            Reason.TRAILING_DATA, f"{len(raw) - length} bytes after the frame", data=raw
        )
    return parse(raw)


def parse(raw: bytes) -> Frame:
    """The typed frame for bytes that `frame_length` has accepted whole; `LockboardError` if a
    value in them is out of range. Internal to the package: use `decode`."""
    address, command, data = raw[1], raw[2], raw[3:-2]
    board, lock = address >> 4, (address & 0x0F) + 1
    try:
        match command:
            case Command.QUERY_BOARD:
                return QueryBoard(board)
            case Command.OPEN_LOCK:
                return OpenLock(board, lock)
            case Command.QUERY_ALL:
                if address != ALL_BOARDS:
                    raise LockboardError(Reason.BAD_ADDRESS, f"32H to {address:02X}H, not F0H")
                return QueryAllBoards()
            case Command.OPEN_ALL:
                return OpenAll(board)
            case Command.BOARD_STATUS:
                return BoardStatus(board, _bits(data[0:2]), _bits(data[2:4]))
            case Command.ALL_STATUS:
                return AllBoardsStatus(board, _bits(data[0:2]), _bits(data[2:4]))
            case Command.PULSE_TIME:
                if not data:
                    return QueryPulseTime(board)
                return SetPulseTime(board, int.from_bytes(data, "big") * PULSE_UNIT_MS)
            case Command.PULSE_TIME_REPLY:
                return PulseTime(board, int.from_bytes(data, "big") * PULSE_UNIT_MS)
            case Command.DELAYED_UNLOCK:
                return DelayedUnlock(board, lock, data[0])
            case Command.QUERY_INFRARED:
                return QueryInfrared(board)
            case Command.SET_BAUD:
                if data[0] >= len(BAUD_RATES):
                    raise LockboardError(Reason.OUT_OF_RANGE, f"baud code {data[0]}")
                return SetBaud(board, BAUD_RATES[data[0]])
    except LockboardError as exc:
        exc.data = raw[:64]
        raise
    # frame_length only accepts the commands matched above.
    raise LockboardError(Reason.UNKNOWN_COMMAND, f"CMD {command:02X}H", data=raw)


def encode(frame: Frame) -> bytes:
    """The bytes of `frame`, SUM included."""
    match frame:
        case QueryBoard():
            return _pack(frame.board << 4, Command.QUERY_BOARD)
        case OpenLock():
            return _pack(frame.board << 4 | (frame.lock - 1), Command.OPEN_LOCK)
        case QueryAllBoards():
            return _pack(ALL_BOARDS, Command.QUERY_ALL)
        case OpenAll():
            return _pack(frame.board << 4, Command.OPEN_ALL)
        case BoardStatus():
            data = _byte_pair(frame.hooks) + _byte_pair(frame.infrared)
            return _pack(frame.board << 4, Command.BOARD_STATUS, data)
        case AllBoardsStatus():
            data = _byte_pair(frame.hooks) + _byte_pair(frame.infrared)
            return _pack(frame.board << 4, Command.ALL_STATUS, data)
        case SetPulseTime():
            units = (frame.ms // PULSE_UNIT_MS).to_bytes(2, "big")
            return _pack(frame.board << 4, Command.PULSE_TIME, units)
        case QueryPulseTime():
            return _pack(frame.board << 4, Command.PULSE_TIME)
        case PulseTime():
            units = (frame.ms // PULSE_UNIT_MS).to_bytes(2, "big")
            return _pack(frame.board << 4, Command.PULSE_TIME_REPLY, units)
        case DelayedUnlock():
            address = frame.board << 4 | (frame.lock - 1)
            return _pack(address, Command.DELAYED_UNLOCK, bytes([frame.seconds]))
        case QueryInfrared():
            return _pack(frame.board << 4, Command.QUERY_INFRARED)
        case SetBaud():
            return _pack(frame.board << 4, Command.SET_BAUD, bytes([frame.code]))
        case _:
            assert_never(frame)


def _pack(address: int, command: int, data: bytes = b"") -> bytes:
    body = bytes([STX, address, command]) + data + bytes([ETX])
    return body + bytes([checksum(body)])


def _byte_pair(bits: tuple[bool, ...]) -> bytes:
    # Lock 1 is bit 0 of the first byte, lock 9 bit 0 of the second.
    value = sum(1 << index for index, bit in enumerate(bits) if bit)
    return value.to_bytes(2, "little")


def _bits(pair: bytes) -> tuple[bool, ...]:
    value = int.from_bytes(pair, "little")
    return tuple(bool(value >> index & 1) for index in range(LOCKS))
