"""The demo's people at the lockers: a door left open is used as its contents say, then shut."""

from __future__ import annotations

import pytest

from courtyard.community import Cabinet
from courtyard.locker_attendant import LockerAttendant
from devices.lockboard import LockBoard


def test_an_empty_open_compartment_gets_a_parcel_and_a_full_one_is_emptied() -> None:
    cabinet = Cabinet(LockBoard(0))
    attendant = LockerAttendant(cabinet, after_s=4.0)
    with cabinet.hands() as board:
        board.force(3)  # stands in for the gateway's open: the hook lets go, the door swings
    attendant.step(100.0)
    attendant.step(103.9)  # not yet: the courier is still at it
    assert cabinet.board.compartment(3).door_open
    attendant.step(104.0)
    third = cabinet.board.compartment(3)
    assert (third.door_open, third.occupied, attendant.deposits) == (False, True, 1)

    with cabinet.hands() as board:
        board.force(3)
    attendant.step(200.0)
    attendant.step(204.0)
    third = cabinet.board.compartment(3)
    assert (third.door_open, third.occupied, attendant.pickups) == (False, False, 1)
    # Nothing else was touched.
    others = [cabinet.board.compartment(n) for n in range(1, 17) if n != 3]
    assert not any(c.door_open or c.occupied for c in others)


def test_a_door_marked_left_open_is_left_alone() -> None:
    cabinet = Cabinet(LockBoard(0))
    attendant = LockerAttendant(cabinet, after_s=1.0)
    with cabinet.hands() as board:
        board.force(5)
        board.leave_open(5)
    attendant.step(0.0)
    attendant.step(10.0)
    fifth = cabinet.board.compartment(5)
    assert (fifth.door_open, fifth.occupied, attendant.deposits) == (True, False, 0)


def test_a_door_shut_by_someone_else_restarts_the_wait() -> None:
    cabinet = Cabinet(LockBoard(0))
    attendant = LockerAttendant(cabinet, after_s=4.0)
    with cabinet.hands() as board:
        board.force(1)
    attendant.step(0.0)
    with cabinet.hands() as board:
        board.close_door(1)
    attendant.step(2.0)
    with cabinet.hands() as board:
        board.force(1)
    attendant.step(3.0)
    attendant.step(6.0)  # 6 s after the first open, 3 s after the second: not yet
    assert cabinet.board.compartment(1).door_open
    attendant.step(7.0)
    assert not cabinet.board.compartment(1).door_open


@pytest.mark.parametrize(("after_s", "poll_s"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_timings_must_be_positive(after_s: float, poll_s: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        LockerAttendant(Cabinet(LockBoard(0)), after_s=after_s, poll_s=poll_s)
