"""A simulated KR-CU16-style lock board: compartments, a person at the cabinet, and faults.

`LockBoard` is a `devices.serialbus` ``BusDevice``: the bus hands it one raw request frame at a time
with the current time, and it answers with a raw reply or stays silent. It does no I/O and reads no
clock; everything time-based happens at the ``now`` it is given.

Each compartment has a door and a hook. In this model the hook is latched exactly when the door is
shut: an open (31H, 33H, or a 39H whose delay has run out) pulses the solenoid, the hook lets go and
the spring pushes the door open, and the hook reads open until someone shuts the door again. The
open happens at the ``now`` of the request; the pulse time is what 37H sets and 38H reports, not a
delay the model waits out. An infrared sensor at the back reports whether something is inside.

The person at the cabinet is an API — `close_door`, `put_parcel`, `take_parcel` — and, optionally,
a forgetful automaton: with ``auto_close_s`` set, every open door is shut that many seconds after
it opened, unless the compartment was marked `leave_open`.

Faults are model state, set and cleared by the scenario:

* `jam(lock)`: the solenoid fires but the hook does not let go; the door stays shut.
* `leave_open(lock)`: the person walks away; the automaton will not close that door.
* `force(lock)`: the door is pried open; the hook opens with no command.
* `stick_infrared(lock, reading)`: the sensor reports `reading` whatever is inside.
* `power_off()` / `power_on()` / `power_cycle()`: while off the board answers nothing; a restart
  forgets pending delayed unlocks but keeps its settings (pulse time, baud) and, being mechanical,
  the doors and hooks stay as they were.
* ``answers_open=False``: firmware that says nothing to 31H/33H/39H, so the gateway must read the
  hook back with 30H — as it should anyway.

Person and fault methods take an optional ``now``; without it they act at the last time the board
was given, and an auto-close timer for a door opened before the board knew any time starts at the
first time it learns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, assert_never

from devices.lockboard.codec import decode, encode
from devices.lockboard.errors import CompartmentError, LockboardError
from devices.lockboard.frames import (
    BOARDS,
    LOCKS,
    MAX_PULSE_MS,
    MIN_PULSE_MS,
    PULSE_UNIT_MS,
    AllBoardsStatus,
    BoardStatus,
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
    SetBaud,
    SetPulseTime,
)

__all__ = ["Compartment", "LockBoard"]

DEFAULT_BAUD: Final = 19200
"""The factory line speed."""

# Kinds of timed event, in the order they apply when two fall due at the same instant: a delayed
# unlock first, so that an automaton's close never races ahead of the open it follows.
_UNLOCK: Final = 0
_AUTO_CLOSE: Final = 1


@dataclass(frozen=True, slots=True)
class Compartment:
    """A snapshot of one compartment, for tests and scenario scripts to inspect."""

    lock: int
    door_open: bool
    hook_closed: bool
    occupied: bool
    """Whether something is really inside."""
    infrared: bool
    """What the sensor reports (differs from `occupied` while it is stuck)."""
    jammed: bool
    left_open: bool
    pulses: int
    """How many times the solenoid fired: two opens of the same parcel show up here."""
    unlock_due: float | None
    """When a pending 39H delayed unlock fires, if one is pending."""


@dataclass(slots=True)
class _State:
    door_open: bool = False
    occupied: bool = False
    jammed: bool = False
    left_open: bool = False
    stuck_infrared: bool | None = None
    opened_at: float | None = None
    unlock_due: float | None = None
    pulses: int = 0


class LockBoard:
    """One simulated lock board on a bus; see the module docstring."""

    address: str
    """``"lockboard:<board>"``, the label the bus uses in statistics and fault injection."""

    checksum_offset: Final = -1
    """Where SUM sits in a reply: the hint the bus simulator's BAD_CHECKSUM fault looks for."""

    def __init__(
        self,
        board: int,
        *,
        locks: int = LOCKS,
        pulse_ms: int = 600,
        answers_open: bool = True,
        auto_close_s: float | None = None,
    ) -> None:
        if isinstance(board, bool) or not isinstance(board, int) or not 0 <= board < BOARDS:
            raise CompartmentError(f"board {board!r} is not 0-{BOARDS - 1}")
        if isinstance(locks, bool) or not isinstance(locks, int) or not 1 <= locks <= LOCKS:
            raise CompartmentError(f"locks {locks!r} is not 1-{LOCKS}")
        if not MIN_PULSE_MS <= pulse_ms <= MAX_PULSE_MS or pulse_ms % PULSE_UNIT_MS:
            raise CompartmentError(f"pulse {pulse_ms!r} ms cannot be set on a board")
        if auto_close_s is not None and not auto_close_s > 0:
            raise CompartmentError(f"auto_close_s {auto_close_s!r} must be positive")
        self.address = f"lockboard:{board}"
        self._board = board
        self._locks = locks
        self._pulse_ms = pulse_ms
        self._baud = DEFAULT_BAUD
        self._answers_open = answers_open
        self._auto_close_s = auto_close_s
        self._powered = True
        self._clock: float | None = None
        # Every compartment starts shut, latched and empty, as a cabinet is delivered.
        self._compartments = {lock: _State() for lock in range(1, locks + 1)}

    # --- what the bus and the gateway see ------------------------------------------------------

    @property
    def board(self) -> int:
        """The DIP-switch address, 0-15."""
        return self._board

    @property
    def locks(self) -> int:
        """How many locks are wired (channels above read hook open, nothing detected)."""
        return self._locks

    @property
    def pulse_ms(self) -> int:
        """The solenoid pulse, as last set by 37H."""
        return self._pulse_ms

    @property
    def baud(self) -> int:
        """The line speed, as last set by 40H (the bus simulator decides whether to honour it)."""
        return self._baud

    @property
    def powered(self) -> bool:
        """False between `power_off` and `power_on`: the board answers nothing."""
        return self._powered

    def respond(self, request: bytes, now: float) -> bytes | None:
        """The raw reply to one raw request frame, or None to stay silent."""
        self.advance(now)
        if not self._powered:
            return None
        try:
            frame = decode(request)
        except LockboardError:
            # A board ignores what it cannot parse; it has no way to say "bad frame".
            return None
        reply = self._handle(frame, now)
        return None if reply is None else encode(reply)

    def status(self) -> BoardStatus:
        """What a 30H would read now (without advancing time)."""
        hooks = [False] * LOCKS
        infrared = [False] * LOCKS
        for lock, state in self._compartments.items():
            hooks[lock - 1] = not state.door_open
            infrared[lock - 1] = _infrared(state)
        return BoardStatus(self._board, tuple(hooks), tuple(infrared))

    def compartment(self, lock: int) -> Compartment:
        """A snapshot of compartment `lock`."""
        state = self._state(lock)
        return Compartment(
            lock=lock,
            door_open=state.door_open,
            hook_closed=not state.door_open,
            occupied=state.occupied,
            infrared=_infrared(state),
            jammed=state.jammed,
            left_open=state.left_open,
            pulses=state.pulses,
            unlock_due=state.unlock_due,
        )

    def advance(self, now: float) -> None:
        """Let time pass up to `now`: fire due delayed unlocks and the automaton's closes, in order.

        Time never runs backwards here: an earlier `now` than already seen is taken as no change.
        """
        if self._clock is not None and now < self._clock:
            now = self._clock
        self._clock = now
        while (event := self._next_event(now)) is not None:
            due, kind, lock = event
            state = self._compartments[lock]
            if kind == _UNLOCK:
                state.unlock_due = None
                self._fire(state, due)
            else:
                state.door_open = False
                state.opened_at = None

    # --- the person at the cabinet -------------------------------------------------------------

    def close_door(self, lock: int, *, now: float | None = None) -> None:
        """Shut the door: the hook latches (a jam does not stop a door from being pushed shut)."""
        state = self._at(lock, now)
        state.door_open = False
        state.opened_at = None
        state.left_open = False

    def put_parcel(self, lock: int, *, now: float | None = None) -> None:
        """Put something into the compartment; its door must be open."""
        state = self._at(lock, now)
        if not state.door_open:
            raise CompartmentError(f"compartment {lock} is shut: nothing can be put in")
        state.occupied = True

    def take_parcel(self, lock: int, *, now: float | None = None) -> None:
        """Take what is inside out; the door must be open and something must be there."""
        state = self._at(lock, now)
        if not state.door_open:
            raise CompartmentError(f"compartment {lock} is shut: nothing can be taken")
        if not state.occupied:
            raise CompartmentError(f"compartment {lock} is empty")
        state.occupied = False

    # --- faults ----------------------------------------------------------------------------------

    def jam(self, lock: int, *, now: float | None = None) -> None:
        """From now on the hook does not let go when the solenoid fires."""
        self._at(lock, now).jammed = True

    def leave_open(self, lock: int, *, now: float | None = None) -> None:
        """The person walks away from this door: the automaton will not shut it.

        Cleared when someone shuts the door with `close_door`.
        """
        self._at(lock, now).left_open = True

    def force(self, lock: int, *, now: float | None = None) -> None:
        """Pry the door open: the hook opens without any command (even a jammed one)."""
        state = self._at(lock, now)
        if not state.door_open:
            state.door_open = True
            state.opened_at = self._clock

    def stick_infrared(self, lock: int, reading: bool | None, *, now: float | None = None) -> None:
        """Make the sensor report `reading` whatever is inside; None makes it honest again."""
        self._at(lock, now).stuck_infrared = reading

    def repair(self, lock: int, *, now: float | None = None) -> None:
        """An engineer's visit: clear the jam, the stuck sensor and the left-open mark."""
        state = self._at(lock, now)
        state.jammed = False
        state.stuck_infrared = None
        state.left_open = False

    def power_off(self, *, now: float | None = None) -> None:
        """Cut power: silent from now on, and pending delayed unlocks are lost."""
        if now is not None:
            self.advance(now)
        self._powered = False
        for state in self._compartments.values():
            state.unlock_due = None

    def power_on(self, *, now: float | None = None) -> None:
        """Restore power; settings survive, pending delayed unlocks do not."""
        if now is not None:
            self.advance(now)
        self._powered = True

    def power_cycle(self, *, now: float | None = None) -> None:
        """Power off and straight back on."""
        self.power_off(now=now)
        self.power_on()

    # --- internals -------------------------------------------------------------------------------

    def _handle(self, frame: Frame, now: float) -> Reply | None:
        if isinstance(frame, QueryAllBoards):
            return AllBoardsStatus(self._board, *self._bits())
        if isinstance(frame, BoardStatus | AllBoardsStatus | PulseTime):
            # Another board's reply seen on the shared line: not for us.
            return None
        if frame.board != self._board:
            return None
        match frame:
            case QueryBoard() | QueryInfrared():
                return self.status()
            case OpenLock():
                if frame.lock in self._compartments:
                    self._fire(self._compartments[frame.lock], now)
                return self._open_reply()
            case OpenAll():
                for each in self._compartments.values():
                    self._fire(each, now)
                return self._open_reply()
            case DelayedUnlock():
                delayed = self._compartments.get(frame.lock)
                if delayed is not None:
                    if frame.seconds == 0:
                        self._fire(delayed, now)
                    else:
                        # A second 39H for the same lock replaces the first, as a timer would.
                        delayed.unlock_due = now + frame.seconds
                return self._open_reply()
            case SetPulseTime():
                self._pulse_ms = frame.ms
                return PulseTime(self._board, self._pulse_ms)
            case QueryPulseTime():
                return PulseTime(self._board, self._pulse_ms)
            case SetBaud():
                # Takes effect at once on the board; the gateway reopens its port at the new
                # speed and reads the status back to confirm, since no reply is documented.
                self._baud = frame.rate
                return None
            case _:
                assert_never(frame)

    def _open_reply(self) -> BoardStatus | None:
        return self.status() if self._answers_open else None

    def _bits(self) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
        status = self.status()
        return status.hooks, status.infrared

    def _fire(self, state: _State, at: float) -> None:
        state.pulses += 1
        if state.jammed or state.door_open:
            return
        state.door_open = True
        state.opened_at = at

    def _next_event(self, now: float) -> tuple[float, int, int] | None:
        earliest: tuple[float, int, int] | None = None
        for lock, state in self._compartments.items():
            candidates: list[tuple[float, int, int]] = []
            if state.unlock_due is not None and self._powered:
                candidates.append((state.unlock_due, _UNLOCK, lock))
            if self._auto_close_s is not None and state.door_open and not state.left_open:
                if state.opened_at is None:
                    # Opened before the board knew the time: the timer starts now.
                    state.opened_at = now
                candidates.append((state.opened_at + self._auto_close_s, _AUTO_CLOSE, lock))
            for candidate in candidates:
                if candidate[0] <= now and (earliest is None or candidate < earliest):
                    earliest = candidate
        return earliest

    def _state(self, lock: int) -> _State:
        if isinstance(lock, bool) or not isinstance(lock, int) or lock not in self._compartments:
            raise CompartmentError(f"board {self._board} has no lock {lock!r} (1-{self._locks})")
        return self._compartments[lock]

    def _at(self, lock: int, now: float | None) -> _State:
        state = self._state(lock)
        if now is not None:
            self.advance(now)
        return state


def _infrared(state: _State) -> bool:
    return state.occupied if state.stuck_infrared is None else state.stuck_infrared
