"""The simulated controller's rules, driven by hand with a fake clock (no broker)."""

from __future__ import annotations

import pytest

from devices.door import (
    AckError,
    Behaviour,
    CommandAck,
    DoorController,
    DoorEvent,
    DoorPosition,
    DoorState,
    EventType,
    Outbound,
    PulseCommand,
    StatusCommand,
    StrikeState,
    TopicKind,
    encode,
)

WALL_MS = 1_764_300_000_000


def make(**options: object) -> DoorController:
    settings: dict[str, object] = {
        "open_delay_ms": 0,
        "walk_through_ms": 500,
        "held_open_s": 10.0,
        "boot": "0badc0de",
        "wall_clock_ms": lambda: WALL_MS,
    }
    settings.update(options)
    controller = DoorController(**settings)  # type: ignore[arg-type]
    controller.power_on(0.0)
    return controller


def events(outputs: list[Outbound]) -> list[tuple[EventType, int, str | None]]:
    found = []
    for item in outputs:
        if item.kind is TopicKind.EVENT:
            assert isinstance(item.message, DoorEvent)
            found.append((item.message.type, item.message.seq, item.message.cmd))
    return found


def acks(outputs: list[Outbound]) -> list[CommandAck]:
    return [item.message for item in outputs if isinstance(item.message, CommandAck)]


def pulse(
    controller: DoorController, command_id: str, now: float, ms: int = 3000
) -> list[Outbound]:
    return controller.receive(encode(PulseCommand(id=command_id, ms=ms)), now)


def test_power_on_reports_boot_then_state() -> None:
    controller = DoorController(boot="0badc0de", wall_clock_ms=lambda: WALL_MS)
    outputs = controller.power_on(5.0)
    assert outputs == [
        Outbound(
            TopicKind.EVENT, DoorEvent(boot="0badc0de", seq=1, ts=WALL_MS, type=EventType.BOOT)
        ),
        Outbound(
            TopicKind.STATE,
            DoorState(
                boot="0badc0de",
                seq=1,
                door=DoorPosition.CLOSED,
                strike=StrikeState.LOCKED,
                fw="sim-1.0",
            ),
        ),
    ]
    with pytest.raises(RuntimeError):
        controller.power_on(6.0)


def test_walk_through_timeline() -> None:
    controller = make(open_delay_ms=0, walk_through_ms=500)
    first = pulse(controller, "c1", now=1.0, ms=3000)
    # With no open delay the door opens in the same step as the release.
    assert acks(first) == [CommandAck.accepted("c1")]
    assert first[0].kind is TopicKind.ACK
    assert events(first) == [
        (EventType.STRIKE_RELEASED, 2, "c1"),
        (EventType.DOOR_OPENED, 3, "c1"),
    ]
    assert controller.next_deadline() == pytest.approx(1.5)
    assert controller.advance(1.49) == []
    assert events(controller.advance(1.5)) == [(EventType.DOOR_CLOSED, 4, None)]
    assert controller.next_deadline() == pytest.approx(4.0)
    last = controller.advance(4.0)
    assert events(last) == [(EventType.STRIKE_RELOCKED, 5, "c1")]
    assert last[-1] == Outbound(TopicKind.STATE, controller.state())
    assert controller.state().seq == 5
    assert controller.strike is StrikeState.LOCKED
    assert controller.strike_pulses == 1
    assert controller.next_deadline() is None


def test_open_delay_and_late_advance_keep_the_order() -> None:
    controller = make(open_delay_ms=200, walk_through_ms=100)
    pulse(controller, "c1", now=0.0, ms=1000)
    # The loop wakes late, long after every deadline: events still come out in time order.
    assert events(controller.advance(10.0)) == [
        (EventType.DOOR_OPENED, 3, "c1"),
        (EventType.DOOR_CLOSED, 4, None),
        (EventType.STRIKE_RELOCKED, 5, "c1"),
    ]


def test_nobody_opens() -> None:
    controller = make(behaviour=Behaviour.NOBODY_OPENS)
    assert events(pulse(controller, "c1", now=0.0, ms=100)) == [
        (EventType.STRIKE_RELEASED, 2, "c1")
    ]
    assert events(controller.advance(0.1)) == [(EventType.STRIKE_RELOCKED, 3, "c1")]
    assert controller.door is DoorPosition.CLOSED
    assert controller.strike_pulses == 1


def test_strike_fails() -> None:
    controller = make(behaviour=Behaviour.STRIKE_FAILS)
    outputs = pulse(controller, "c1", now=0.0)
    assert acks(outputs) == [CommandAck.refused("c1", AckError.STRIKE_FAULT)]
    assert events(outputs) == [(EventType.STRIKE_FAULT, 2, "c1")]
    assert controller.strike is StrikeState.LOCKED
    assert controller.strike_pulses == 0
    assert controller.next_deadline() is None


def test_door_opening_too_late_does_not_happen() -> None:
    controller = make(open_delay_ms=500)
    pulse(controller, "c1", now=0.0, ms=100)
    assert events(controller.advance(1.0)) == [(EventType.STRIKE_RELOCKED, 3, "c1")]
    assert controller.door is DoorPosition.CLOSED


def test_second_pulse_restarts_the_window_and_takes_it_over() -> None:
    controller = make(behaviour=Behaviour.NOBODY_OPENS)
    pulse(controller, "c1", now=0.0, ms=1000)
    second = pulse(controller, "c2", now=0.5, ms=1000)
    assert acks(second) == [CommandAck.accepted("c2")]
    assert events(second) == [(EventType.STRIKE_RELEASED, 3, "c2")]
    assert controller.advance(1.4) == []
    assert events(controller.advance(1.5)) == [(EventType.STRIKE_RELOCKED, 4, "c2")]
    assert controller.strike_pulses == 1


def test_duplicate_id_is_acked_again_and_does_nothing_else() -> None:
    controller = make(behaviour=Behaviour.NOBODY_OPENS)
    pulse(controller, "c1", now=0.0, ms=100)
    controller.advance(1.0)
    again = pulse(controller, "c1", now=2.0, ms=100)
    assert again == [Outbound(TopicKind.ACK, CommandAck.accepted("c1"))]
    assert controller.strike_pulses == 1
    # A refusal is remembered too: the retry gets the same answer.
    controller.behaviour = Behaviour.STRIKE_FAILS
    pulse(controller, "c2", now=3.0)
    controller.behaviour = Behaviour.NOBODY_OPENS
    assert pulse(controller, "c2", now=4.0) == [
        Outbound(TopicKind.ACK, CommandAck.refused("c2", AckError.STRIKE_FAULT))
    ]


def test_remembered_ids_are_bounded() -> None:
    controller = make(behaviour=Behaviour.NOBODY_OPENS, remembered_commands=2)
    for number, command_id in enumerate(["a", "b", "c"]):
        pulse(controller, command_id, now=float(number), ms=100)
        controller.advance(number + 0.5)
    assert controller.strike_pulses == 3
    pulse(controller, "a", now=10.0, ms=100)  # forgotten, so it is a new command
    controller.advance(10.5)
    assert controller.strike_pulses == 4
    assert pulse(controller, "c", now=11.0, ms=100) == [
        Outbound(TopicKind.ACK, CommandAck.accepted("c"))
    ]


def test_status_acks_then_republishes_state() -> None:
    controller = make()
    outputs = controller.receive(encode(StatusCommand(id="s1")), 0.0)
    assert outputs == [
        Outbound(TopicKind.ACK, CommandAck.accepted("s1")),
        Outbound(TopicKind.STATE, controller.state()),
    ]


def test_pulse_on_an_unwired_relay_is_refused() -> None:
    controller = make(strike_relay=2)
    outputs = controller.receive(encode(PulseCommand(id="c1", ms=3000, relay=1)), 0.0)
    assert outputs == [Outbound(TopicKind.ACK, CommandAck.refused("c1", AckError.BAD_COMMAND))]
    assert controller.strike_pulses == 0
    assert events(controller.receive(encode(PulseCommand(id="c2", ms=3000, relay=2)), 0.0))


def test_malformed_commands() -> None:
    controller = make()
    refused = controller.receive(b'{"v":1,"id":"c9","op":"pulse","relay":1,"ms":1}', 0.0)
    assert refused == [Outbound(TopicKind.ACK, CommandAck.refused("c9", AckError.BAD_COMMAND))]
    assert controller.receive(b"\x00garbage", 0.0) == []
    assert controller.receive(b'{"v":1,"op":"pulse"}', 0.0) == []
    assert controller.strike_pulses == 0


def test_forced_open_held_open_and_close() -> None:
    controller = make(held_open_s=10.0)
    outputs = controller.force_open(1.0)
    assert events(outputs) == [(EventType.FORCED_OPEN, 2, None)]
    assert outputs[-1].message == controller.state()
    assert controller.door is DoorPosition.OPEN
    assert controller.force_open(2.0) == []
    assert controller.advance(10.9) == []
    assert events(controller.advance(11.0)) == [(EventType.HELD_OPEN, 3, None)]
    assert controller.advance(100.0) == []  # reported once per opening
    assert events(controller.close_door(101.0)) == [(EventType.DOOR_CLOSED, 4, None)]
    assert controller.close_door(102.0) == []


def test_closing_in_time_cancels_held_open() -> None:
    controller = make(held_open_s=10.0)
    controller.force_open(0.0)
    controller.close_door(5.0)
    assert controller.next_deadline() is None


def test_walk_through_longer_than_held_open_reports_held_open() -> None:
    controller = make(walk_through_ms=2000, held_open_s=1.0)
    pulse(controller, "c1", now=0.0, ms=5000)
    assert events(controller.advance(6.0)) == [
        (EventType.HELD_OPEN, 4, None),
        (EventType.DOOR_CLOSED, 5, None),
        (EventType.STRIKE_RELOCKED, 6, "c1"),
    ]


def test_pushing_the_door_during_a_pulse_is_a_normal_opening() -> None:
    controller = make(behaviour=Behaviour.NOBODY_OPENS)
    pulse(controller, "c1", now=0.0, ms=1000)
    assert events(controller.force_open(0.2)) == [(EventType.DOOR_OPENED, 3, "c1")]
    assert events(controller.advance(1.0)) == [(EventType.STRIKE_RELOCKED, 4, "c1")]
    assert controller.door is DoorPosition.OPEN


def test_reboot_starts_a_new_boot_and_keeps_the_door() -> None:
    controller = make(behaviour=Behaviour.NOBODY_OPENS)
    pulse(controller, "c1", now=0.0, ms=1000)
    controller.force_open(0.1)
    old_boot = controller.boot
    outputs = controller.reboot(0.2)
    assert controller.boot != old_boot
    assert events(outputs) == [(EventType.BOOT, 1, None)]
    assert controller.strike is StrikeState.LOCKED
    assert controller.door is DoorPosition.OPEN
    assert controller.strike_pulses == 1
    # Commands of the previous boot are forgotten; the pulse window died with the power.
    assert controller.next_deadline() == pytest.approx(10.2)  # held_open, re-armed
    assert events(pulse(controller, "c1", now=0.3, ms=100))[0] == (
        EventType.STRIKE_RELEASED,
        2,
        "c1",
    )


@pytest.mark.parametrize(
    "options",
    [
        {"open_delay_ms": -1},
        {"walk_through_ms": -1},
        {"held_open_s": 0},
        {"strike_relay": 5},
        {"remembered_commands": 0},
        {"boot": "nothex!!"},
        {"fw": "has space"},
    ],
)
def test_constructor_validates(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        DoorController(**options)  # type: ignore[arg-type]
