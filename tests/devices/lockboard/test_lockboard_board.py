"""The simulated lock board, driven over its wire protocol: the normal cycle and every fault."""

from __future__ import annotations

import pytest

from devices.lockboard import (
    AllBoardsStatus,
    BoardStatus,
    CompartmentError,
    Decoder,
    DelayedUnlock,
    Frame,
    LockBoard,
    OpenAll,
    OpenLock,
    PulseTime,
    QueryAllBoards,
    QueryBoard,
    QueryInfrared,
    QueryPulseTime,
    SetBaud,
    SetPulseTime,
    encode,
)
from devices.lockboard import RequestFramer as LockboardRequestFramer
from devices.serialbus.device import BusDevice, RequestFramer


def ask(board: LockBoard, request: Frame, now: float) -> Frame | None:
    """Send one request frame as bytes and decode the reply, as the gateway would."""
    reply = board.respond(encode(request), now)
    if reply is None:
        return None
    frames = Decoder().feed(reply)
    assert len(frames) == 1
    return frames[0]


def read(board: LockBoard, now: float) -> BoardStatus:
    """30H, the read-back the gateway does after every open."""
    status = ask(board, QueryBoard(board.board), now)
    assert isinstance(status, BoardStatus)
    return status


def test_it_is_a_bus_device_with_a_framer() -> None:
    # Typed assignments: mypy checks the structural protocols of devices.serialbus.
    device: BusDevice = LockBoard(3)
    framer: RequestFramer = LockboardRequestFramer()
    assert device.address == "lockboard:3"
    assert LockBoard.checksum_offset == -1  # SUM is the last byte, for BAD_CHECKSUM injection
    (request,) = framer.feed(encode(QueryBoard(3)))
    reply = device.respond(request, 0.0)
    assert reply is not None
    assert Decoder().feed(reply) == [LockBoard(3).status()]


def test_a_new_board_is_latched_and_empty() -> None:
    status = read(LockBoard(0), 0.0)
    assert status.hooks == (True,) * 16
    assert status.infrared == (False,) * 16


def test_deposit_and_pickup_cycle_with_infrared() -> None:
    board = LockBoard(1)
    # Courier: open 5, the door springs open, the parcel goes in, the door is shut.
    reply = ask(board, OpenLock(1, 5), 10.0)
    assert isinstance(reply, BoardStatus)
    assert not reply.hook_closed(5)
    assert reply.hook_closed(4)
    assert reply.hook_closed(6)
    assert board.compartment(5).door_open
    board.put_parcel(5)
    status = read(board, 11.0)
    assert not status.hook_closed(5)
    assert status.occupied(5)
    board.close_door(5)
    status = read(board, 12.0)
    assert status.hook_closed(5)
    assert status.occupied(5)
    # Resident: open 5 again, take the parcel, shut the door.
    ask(board, OpenLock(1, 5), 100.0)
    board.take_parcel(5)
    board.close_door(5)
    status = read(board, 101.0)
    assert status.hook_closed(5)
    assert not status.occupied(5)
    assert board.compartment(5).pulses == 2


def test_door_shut_with_nothing_inside_shows_hook_closed_and_no_parcel() -> None:
    board = LockBoard(0)
    ask(board, OpenLock(0, 2), 0.0)
    board.close_door(2)
    status = read(board, 1.0)
    assert status.hook_closed(2)
    assert not status.occupied(2)


def test_a_jammed_lock_stays_latched_however_often_it_is_opened() -> None:
    board = LockBoard(0)
    board.jam(7)
    for attempt in range(2):
        reply = ask(board, OpenLock(0, 7), float(attempt))
        assert isinstance(reply, BoardStatus)
        assert reply.hook_closed(7)
    assert read(board, 2.0).hook_closed(7)
    assert board.compartment(7).pulses == 2
    assert not board.compartment(7).door_open
    board.repair(7)
    ask(board, OpenLock(0, 7), 3.0)
    assert not read(board, 3.1).hook_closed(7)


def test_the_automaton_shuts_doors_unless_one_is_left_open() -> None:
    board = LockBoard(0, auto_close_s=5.0)
    ask(board, OpenLock(0, 1), 100.0)
    assert not read(board, 104.9).hook_closed(1)
    assert read(board, 105.0).hook_closed(1)

    board.leave_open(1)
    ask(board, OpenLock(0, 1), 200.0)
    assert not read(board, 10_000.0).hook_closed(1)
    assert board.compartment(1).left_open
    # Someone finally comes back and shuts it.
    board.close_door(1, now=10_001.0)
    assert read(board, 10_002.0).hook_closed(1)
    assert not board.compartment(1).left_open


def test_without_the_automaton_an_open_door_stays_open() -> None:
    board = LockBoard(0)
    ask(board, OpenLock(0, 3), 0.0)
    assert not read(board, 86_400.0).hook_closed(3)


def test_a_forced_door_opens_the_hook_without_a_command() -> None:
    board = LockBoard(2)
    board.jam(4)
    board.force(4, now=50.0)
    status = read(board, 50.5)
    assert not status.hook_closed(4)
    assert board.compartment(4).pulses == 0
    board.close_door(4)
    assert read(board, 51.0).hook_closed(4)


def test_a_forced_door_before_the_board_knew_the_time_still_shuts_on_time() -> None:
    board = LockBoard(0, auto_close_s=2.0)
    board.force(1)
    assert not read(board, 1000.0).hook_closed(1)  # its timer starts at 1000
    assert not read(board, 1001.9).hook_closed(1)
    assert read(board, 1002.0).hook_closed(1)


@pytest.mark.parametrize(
    "request_",
    [OpenLock(0, 1), OpenAll(0), DelayedUnlock(0, 1, 0)],
    ids=["31H", "33H", "39H"],
)
def test_silent_firmware_opens_without_a_reply_and_30h_shows_it(request_: Frame) -> None:
    board = LockBoard(0, answers_open=False)
    assert board.respond(encode(request_), 0.0) is None
    assert not read(board, 0.2).hook_closed(1)


def test_power_loss_silences_the_board_and_keeps_doors_and_settings() -> None:
    board = LockBoard(0)
    ask(board, SetPulseTime(0, 300), 0.0)
    ask(board, OpenLock(0, 1), 1.0)
    board.put_parcel(1)
    ask(board, DelayedUnlock(0, 2, 10), 2.0)
    board.power_off(now=3.0)
    assert not board.powered
    assert board.respond(encode(QueryBoard(0)), 4.0) is None
    assert board.respond(encode(QueryAllBoards()), 4.0) is None
    board.power_on(now=60.0)
    status = read(board, 61.0)
    assert not status.hook_closed(1)
    assert status.occupied(1)
    assert status.hook_closed(2)  # the delayed unlock died with the power
    assert board.compartment(2).unlock_due is None
    assert ask(board, QueryPulseTime(0), 62.0) == PulseTime(0, 300)


def test_power_cycle_forgets_a_pending_delayed_unlock() -> None:
    board = LockBoard(0)
    ask(board, DelayedUnlock(0, 9, 5), 0.0)
    board.power_cycle(now=1.0)
    assert board.powered
    assert read(board, 100.0).hook_closed(9)


def test_delayed_unlock_fires_at_its_time_and_a_second_one_replaces_the_first() -> None:
    board = LockBoard(0)
    reply = ask(board, DelayedUnlock(0, 6, 3), 10.0)
    assert isinstance(reply, BoardStatus)
    assert reply.hook_closed(6)
    assert board.compartment(6).unlock_due == 13.0
    assert read(board, 12.9).hook_closed(6)
    assert not read(board, 13.0).hook_closed(6)
    board.close_door(6)
    ask(board, DelayedUnlock(0, 6, 5), 20.0)
    ask(board, DelayedUnlock(0, 6, 30), 21.0)
    assert read(board, 40.0).hook_closed(6)
    assert not read(board, 51.0).hook_closed(6)
    assert board.compartment(6).pulses == 2


def test_events_falling_due_in_one_step_apply_in_time_order() -> None:
    board = LockBoard(0, auto_close_s=1.0)
    ask(board, DelayedUnlock(0, 1, 5), 0.0)
    # One jump past both the unlock (t=5) and the automaton's close (t=6).
    status = read(board, 60.0)
    assert status.hook_closed(1)
    assert board.compartment(1).pulses == 1


def test_open_all_opens_every_lock_but_a_jammed_one() -> None:
    board = LockBoard(4)
    board.jam(16)
    reply = ask(board, OpenAll(4), 0.0)
    assert isinstance(reply, BoardStatus)
    assert reply.hooks == (False,) * 15 + (True,)


def test_every_board_answers_32h_with_its_own_36h() -> None:
    bus = [LockBoard(0), LockBoard(1), LockBoard(5, locks=12)]
    bus[1].force(3)
    request = encode(QueryAllBoards())
    line = b"".join(reply for board in bus if (reply := board.respond(request, 0.0)))
    replies = Decoder().feed(line)
    assert [reply.board for reply in replies if isinstance(reply, AllBoardsStatus)] == [0, 1, 5]
    assert line.startswith(bytes.fromhex("02 00 36 FF FF 00 00 03 39"))
    assert replies[1] == AllBoardsStatus(1, bus[1].status().hooks, bus[1].status().infrared)
    # Channels 13-16 of a 12-lock board read unlatched and empty: nothing is wired there.
    assert replies[2] == AllBoardsStatus(5, (True,) * 12 + (False,) * 4, (False,) * 16)


def test_pulse_time_set_and_query() -> None:
    board = LockBoard(0)
    assert ask(board, QueryPulseTime(0), 0.0) == PulseTime(0, 600)
    assert ask(board, SetPulseTime(0, 1200), 0.0) == PulseTime(0, 1200)
    assert board.pulse_ms == 1200
    assert ask(board, QueryPulseTime(0), 0.0) == PulseTime(0, 1200)


def test_3ah_answers_with_the_status_frame_and_its_infrared_bits() -> None:
    board = LockBoard(0)
    ask(board, OpenLock(0, 12), 0.0)
    board.put_parcel(12)
    board.close_door(12)
    reply = ask(board, QueryInfrared(0), 1.0)
    assert isinstance(reply, BoardStatus)
    assert reply.occupied(12)
    assert not reply.occupied(11)


def test_a_stuck_infrared_sensor_disagrees_with_what_is_inside() -> None:
    board = LockBoard(0)
    board.stick_infrared(8, True)
    assert read(board, 0.0).occupied(8)
    assert not board.compartment(8).occupied
    board.stick_infrared(8, None)
    assert not read(board, 1.0).occupied(8)


def test_set_baud_is_silent_and_takes_effect() -> None:
    board = LockBoard(0)
    assert board.baud == 19200
    assert ask(board, SetBaud(0, 115200), 0.0) is None
    assert board.baud == 115200
    board.power_cycle()
    assert board.baud == 115200


@pytest.mark.parametrize(
    "wire",
    [
        encode(QueryBoard(1)),  # another board
        encode(OpenLock(2, 1)),  # another board
        encode(read(LockBoard(0), 0.0)),  # a reply seen on the line
        encode(PulseTime(0, 600)),
        bytes.fromhex("02 00 30 03 36"),  # bad SUM
        bytes.fromhex("02 00 30 03"),  # half a frame
        b"",
    ],
)
def test_the_board_stays_silent_to_what_is_not_a_request_for_it(wire: bytes) -> None:
    board = LockBoard(0)
    assert board.respond(wire, 0.0) is None
    assert board.status() == LockBoard(0).status()


def test_opening_a_lock_that_is_not_wired_does_nothing() -> None:
    board = LockBoard(0, locks=8)
    reply = ask(board, OpenLock(0, 9), 0.0)
    assert isinstance(reply, BoardStatus)
    assert reply.hooks == (True,) * 8 + (False,) * 8
    with pytest.raises(CompartmentError):
        board.compartment(9)


def test_time_never_runs_backwards() -> None:
    board = LockBoard(0)
    ask(board, DelayedUnlock(0, 1, 5), 100.0)
    assert read(board, 50.0).hook_closed(1)  # an earlier clock is taken as no change
    assert not read(board, 105.0).hook_closed(1)


@pytest.mark.parametrize(
    "action",
    [
        lambda board: board.put_parcel(1),  # the door is shut
        lambda board: board.take_parcel(1),  # the door is shut
        lambda board: board.close_door(17),
        lambda board: board.jam(0),
        lambda board: board.force(True),
    ],
)
def test_the_person_cannot_do_the_impossible(action: object) -> None:
    assert callable(action)
    with pytest.raises(CompartmentError):
        action(LockBoard(0))


def test_taking_from_an_empty_compartment_is_refused() -> None:
    board = LockBoard(0)
    board.force(1)
    with pytest.raises(CompartmentError):
        board.take_parcel(1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"board": 16},
        {"board": -1},
        {"board": 0, "locks": 0},
        {"board": 0, "locks": 17},
        {"board": 0, "pulse_ms": 5},
        {"board": 0, "pulse_ms": 605},
        {"board": 0, "auto_close_s": 0.0},
    ],
)
def test_impossible_boards_cannot_be_built(kwargs: dict[str, int | float]) -> None:
    with pytest.raises(CompartmentError):
        LockBoard(**kwargs)  # type: ignore[arg-type]
