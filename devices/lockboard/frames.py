"""The typed frames of the Kerong KR-CU16-style lock board: requests, replies, and their limits.

Every frame is a frozen, slotted dataclass that validates itself in ``__post_init__`` and raises
`LockboardError` (reason `Reason.OUT_OF_RANGE`) when a value cannot be carried, so an invalid frame
cannot be built on either side of the wire. Boards are numbered 0-15 (the DIP switch), locks 1-16
(the numbers printed on the board; the wire carries ``lock - 1`` in the low nibble of ADDR).

Requests (gateway → board) and replies (board → gateway):

    30H QueryBoard       → 35H BoardStatus
    31H OpenLock         → 35H BoardStatus, or nothing (firmware-dependent)
    32H QueryAllBoards   → 36H AllBoardsStatus from every board on the bus, one frame each
    33H OpenAll          → 35H BoardStatus, or nothing
    37H SetPulseTime     → 38H PulseTime
    37H QueryPulseTime   → 38H PulseTime
    39H DelayedUnlock    → 35H BoardStatus, or nothing
    3AH QueryInfrared    → 35H BoardStatus (it carries the infrared bits)
    40H SetBaud          → nothing

The byte layout lives in `devices.lockboard.codec`; which parts are vendor-documented and which
are our reading is recorded in ``docs/protocol-lockboard.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, TypeAlias

from devices.lockboard.errors import LockboardError, Reason

__all__ = [
    "BAUD_RATES",
    "BOARDS",
    "LOCKS",
    "MAX_DELAY_S",
    "MAX_PULSE_MS",
    "MAX_REPORTED_PULSE_MS",
    "MIN_PULSE_MS",
    "PULSE_UNIT_MS",
    "AllBoardsStatus",
    "BoardStatus",
    "Command",
    "DelayedUnlock",
    "Frame",
    "OpenAll",
    "OpenLock",
    "PulseTime",
    "QueryAllBoards",
    "QueryBoard",
    "QueryInfrared",
    "QueryPulseTime",
    "Reply",
    "Request",
    "SetBaud",
    "SetPulseTime",
]

BOARDS: Final = 16
"""Boards per bus: the four-bit DIP-switch address, 0-15."""

LOCKS: Final = 16
"""Locks per board, numbered 1-16."""

PULSE_UNIT_MS: Final = 10
"""The unit of the 37H/38H pulse time on the wire."""

MIN_PULSE_MS: Final = 10
"""The shortest pulse we set: one unit. Zero would mean "never open"."""

MAX_PULSE_MS: Final = 5000
"""The longest pulse we set.

Two reasons, either sufficient: a lock solenoid held for seconds overheats (boards ship with a
fraction of a second), and a limit under 7680 ms keeps the high byte of a 37H set below 03H, so a
set frame can never be read as the data-less 37H query (``02 ADDR 37 03 SUM``) — see the codec.
"""

MAX_REPORTED_PULSE_MS: Final = 0xFFFF * PULSE_UNIT_MS
"""What a 38H reply can carry: we accept whatever a board reports, set or not by us."""

MAX_DELAY_S: Final = 250
"""The longest 39H delayed unlock, in seconds (vendor table)."""

BAUD_RATES: Final[tuple[int, ...]] = (9600, 19200, 57600, 115200)
"""40H rates; a rate's position in this tuple is its code on the wire."""


class Command(enum.IntEnum):
    """The CMD byte."""

    QUERY_BOARD = 0x30
    OPEN_LOCK = 0x31
    QUERY_ALL = 0x32
    OPEN_ALL = 0x33
    BOARD_STATUS = 0x35
    ALL_STATUS = 0x36
    PULSE_TIME = 0x37
    PULSE_TIME_REPLY = 0x38
    DELAYED_UNLOCK = 0x39
    QUERY_INFRARED = 0x3A
    SET_BAUD = 0x40


def _check_board(board: int) -> None:
    # bool is an int subclass; True as a board number is a bug, not board 1.
    if isinstance(board, bool) or not isinstance(board, int) or not 0 <= board < BOARDS:
        raise LockboardError(Reason.OUT_OF_RANGE, f"board {board!r} is not 0-{BOARDS - 1}")


def _check_lock(lock: int) -> None:
    if isinstance(lock, bool) or not isinstance(lock, int) or not 1 <= lock <= LOCKS:
        raise LockboardError(Reason.OUT_OF_RANGE, f"lock {lock!r} is not 1-{LOCKS}")


def _check_bits(name: str, bits: tuple[bool, ...]) -> None:
    if not isinstance(bits, tuple) or len(bits) != LOCKS:
        raise LockboardError(Reason.OUT_OF_RANGE, f"{name} must be a tuple of {LOCKS} bools")
    if not all(isinstance(bit, bool) for bit in bits):
        raise LockboardError(Reason.OUT_OF_RANGE, f"{name} must hold bools only")


def _check_ms(ms: int, low: int, high: int) -> None:
    if isinstance(ms, bool) or not isinstance(ms, int) or not low <= ms <= high:
        raise LockboardError(Reason.OUT_OF_RANGE, f"pulse {ms!r} ms is not {low}-{high}")
    if ms % PULSE_UNIT_MS:
        raise LockboardError(
            Reason.OUT_OF_RANGE, f"pulse {ms} ms is not a multiple of {PULSE_UNIT_MS} ms"
        )


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryBoard:
    """30H: read one board's hooks and infrared sensors."""

    board: int

    def __post_init__(self) -> None:
        _check_board(self.board)


@dataclass(frozen=True, slots=True)
class OpenLock:
    """31H: pulse one lock's solenoid. Always read the hook back with 30H afterwards."""

    board: int
    lock: int

    def __post_init__(self) -> None:
        _check_board(self.board)
        _check_lock(self.lock)


@dataclass(frozen=True, slots=True)
class QueryAllBoards:
    """32H to the all-boards address F0H: every board on the bus answers with its own 36H."""


@dataclass(frozen=True, slots=True)
class OpenAll:
    """33H: pulse every lock of one board (an admin action, audit-logged upstream)."""

    board: int

    def __post_init__(self) -> None:
        _check_board(self.board)


@dataclass(frozen=True, slots=True)
class SetPulseTime:
    """37H with data: set how long the solenoid is energised on an open, in ms (10 ms steps)."""

    board: int
    ms: int

    def __post_init__(self) -> None:
        _check_board(self.board)
        _check_ms(self.ms, MIN_PULSE_MS, MAX_PULSE_MS)


@dataclass(frozen=True, slots=True)
class QueryPulseTime:
    """37H without data: ask for the pulse time."""

    board: int

    def __post_init__(self) -> None:
        _check_board(self.board)


@dataclass(frozen=True, slots=True)
class DelayedUnlock:
    """39H: open one lock after `seconds` (0-250); 0 opens at once."""

    board: int
    lock: int
    seconds: int

    def __post_init__(self) -> None:
        _check_board(self.board)
        _check_lock(self.lock)
        seconds = self.seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise LockboardError(Reason.OUT_OF_RANGE, f"delay {seconds!r} is not an int")
        if not 0 <= seconds <= MAX_DELAY_S:
            raise LockboardError(Reason.OUT_OF_RANGE, f"delay {seconds} s is not 0-{MAX_DELAY_S}")


@dataclass(frozen=True, slots=True)
class QueryInfrared:
    """3AH: read the infrared (occupancy) sensors; answered with the 35H status frame."""

    board: int

    def __post_init__(self) -> None:
        _check_board(self.board)


@dataclass(frozen=True, slots=True)
class SetBaud:
    """40H: switch the board's line speed to `rate` (one of `BAUD_RATES`); no reply."""

    board: int
    rate: int

    def __post_init__(self) -> None:
        _check_board(self.board)
        if isinstance(self.rate, bool) or self.rate not in BAUD_RATES:
            raise LockboardError(Reason.OUT_OF_RANGE, f"baud {self.rate!r} is not in {BAUD_RATES}")

    @property
    def code(self) -> int:
        """The rate's code on the wire (0=9600, 1=19200, 2=57600, 3=115200)."""
        return BAUD_RATES.index(self.rate)


# --- replies --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardStatus:
    """35H: one board's 16 hooks and 16 infrared sensors; index 0 is lock 1.

    ``hooks[i]`` is True when lock ``i + 1``'s hook is closed (latched); ``infrared[i]`` is True
    when its sensor detects an object (a parcel).
    """

    board: int
    hooks: tuple[bool, ...]
    infrared: tuple[bool, ...]

    def __post_init__(self) -> None:
        _check_board(self.board)
        _check_bits("hooks", self.hooks)
        _check_bits("infrared", self.infrared)

    def hook_closed(self, lock: int) -> bool:
        """Whether lock `lock` (1-16) reads latched."""
        _check_lock(lock)
        return self.hooks[lock - 1]

    def occupied(self, lock: int) -> bool:
        """Whether compartment `lock` (1-16) senses an object."""
        _check_lock(lock)
        return self.infrared[lock - 1]


@dataclass(frozen=True, slots=True)
class AllBoardsStatus:
    """36H: one board's answer to 32H, with the same hook and infrared bits as 35H.

    Each board on the bus answers 32H with its own 36H frame, so a bus of n boards yields n of
    these; the gateway gathers them until the line goes quiet.
    """

    board: int
    hooks: tuple[bool, ...]
    infrared: tuple[bool, ...]

    def __post_init__(self) -> None:
        _check_board(self.board)
        _check_bits("hooks", self.hooks)
        _check_bits("infrared", self.infrared)

    def as_board_status(self) -> BoardStatus:
        """The same reading as a `BoardStatus`, so one code path can handle 35H and 36H."""
        return BoardStatus(self.board, self.hooks, self.infrared)


@dataclass(frozen=True, slots=True)
class PulseTime:
    """38H: the board's pulse time in ms, as it reports it (any 16-bit count of 10 ms)."""

    board: int
    ms: int

    def __post_init__(self) -> None:
        _check_board(self.board)
        _check_ms(self.ms, 0, MAX_REPORTED_PULSE_MS)


Request: TypeAlias = (
    QueryBoard
    | OpenLock
    | QueryAllBoards
    | OpenAll
    | SetPulseTime
    | QueryPulseTime
    | DelayedUnlock
    | QueryInfrared
    | SetBaud
)
"""A frame the gateway sends to a board."""

Reply: TypeAlias = BoardStatus | AllBoardsStatus | PulseTime
"""A frame a board sends to the gateway."""

Frame: TypeAlias = Request | Reply
"""Any lock-board frame."""
