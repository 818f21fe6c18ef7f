"""The Kerong KR-CU16-style lock control board: its RS-485 protocol and a simulated board.

The codec is sans-I/O: `encode(frame) -> bytes`, `decode(bytes) -> frame` for exactly one frame,
and `Decoder.feed(bytes) -> list[frame]` for a stream, hunting past garbage. Frames are frozen,
slotted dataclasses that cannot hold invalid values (`frames`); errors are `LockboardError`
(`errors`). `LockBoard` (`board`) plays a board on a simulated bus, with compartments, a person at
the cabinet and faults. The wire format, line settings and what is vendor-documented versus our
reading are in ``docs/protocol-lockboard.md``.
"""

from devices.lockboard.board import Compartment, LockBoard
from devices.lockboard.codec import (
    ALL_BOARDS,
    ETX,
    MAX_FRAME_LENGTH,
    MIN_FRAME_LENGTH,
    STX,
    checksum,
    decode,
    encode,
    frame_length,
)
from devices.lockboard.errors import (
    CompartmentError,
    LockboardChecksumError,
    LockboardError,
    Reason,
)
from devices.lockboard.frames import (
    BAUD_RATES,
    BOARDS,
    LOCKS,
    MAX_DELAY_S,
    MAX_PULSE_MS,
    MAX_REPORTED_PULSE_MS,
    MIN_PULSE_MS,
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
    Reply,
    Request,
    SetBaud,
    SetPulseTime,
)
from devices.lockboard.framing import Decoder, RequestFramer

__all__ = [
    "ALL_BOARDS",
    "BAUD_RATES",
    "BOARDS",
    "ETX",
    "LOCKS",
    "MAX_DELAY_S",
    "MAX_FRAME_LENGTH",
    "MAX_PULSE_MS",
    "MAX_REPORTED_PULSE_MS",
    "MIN_FRAME_LENGTH",
    "MIN_PULSE_MS",
    "PULSE_UNIT_MS",
    "STX",
    "AllBoardsStatus",
    "BoardStatus",
    "Command",
    "Compartment",
    "CompartmentError",
    "Decoder",
    "DelayedUnlock",
    "Frame",
    "LockBoard",
    "LockboardChecksumError",
    "LockboardError",
    "OpenAll",
    "OpenLock",
    "PulseTime",
    "QueryAllBoards",
    "QueryBoard",
    "QueryInfrared",
    "QueryPulseTime",
    "Reason",
    "Reply",
    "Request",
    "RequestFramer",
    "SetBaud",
    "SetPulseTime",
    "checksum",
    "decode",
    "encode",
    "frame_length",
]
