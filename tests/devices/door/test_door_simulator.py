"""The door simulator end to end on a real broker, checked by an independent MQTT client."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from devices.door import (
    AckError,
    Behaviour,
    CommandAck,
    DoorEvent,
    DoorOffline,
    DoorPosition,
    DoorSimulator,
    DoorState,
    DoorTopics,
    EventType,
    MqttProtocol,
    PulseCommand,
    StatusCommand,
    StrikeState,
    parse_ack,
    parse_event,
    parse_state,
    run_simulators,
)
from tests.devices.door.door_mqtt import TIMEOUT, DoorSite, Observer

FAST: dict[str, Any] = {"open_delay_ms": 0, "walk_through_ms": 50}


def start_watched(
    site: DoorSite, device: str = "gate", **options: Any
) -> tuple[DoorSimulator, Observer, DoorTopics]:
    """Subscribe an observer to every topic of `device`, then boot a simulator for it."""
    topics = site.topics(device)
    observer = site.observer(f"{site.prefix}/door/{device}/+")
    simulator = site.simulator(device, **options)
    simulator.start()
    boot = observer.event(topics)
    assert (boot.type, boot.seq, boot.cmd) == (EventType.BOOT, 1, None)
    assert observer.state(topics) == DoorState(
        boot=boot.boot,
        seq=1,
        door=DoorPosition.CLOSED,
        strike=StrikeState.LOCKED,
        fw="sim-1.0",
    )
    simulator.wait_for(lambda s: s.online, TIMEOUT)
    assert simulator.boot == boot.boot
    return simulator, observer, topics


def barrier(observer: Observer, topics: DoorTopics, command_id: str = "barrier") -> None:
    """Round-trip a status command: everything the controller sent before it has now arrived."""
    observer.send(topics, StatusCommand(id=command_id))
    assert observer.ack(topics) == CommandAck.accepted(command_id)
    assert isinstance(observer.state(topics), DoorState)


def shape(event: DoorEvent) -> tuple[EventType, int, str | None]:
    return (event.type, event.seq, event.cmd)


def test_walk_through_acks_then_reports_the_door_in_order(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, **FAST)

    observer.send(topics, PulseCommand(id="c1", ms=300))

    ack = observer.next(topics.ack)
    raw_events = [observer.next(topics.event) for _ in range(4)]
    assert parse_ack(ack.payload) == CommandAck.accepted("c1")
    assert ack.order < raw_events[0].order
    events = [parse_event(item.payload) for item in raw_events]
    assert [shape(e) for e in events] == [
        (EventType.STRIKE_RELEASED, 2, "c1"),
        (EventType.DOOR_OPENED, 3, "c1"),
        (EventType.DOOR_CLOSED, 4, None),
        (EventType.STRIKE_RELOCKED, 5, "c1"),
    ]
    assert {e.boot for e in events} == {simulator.boot}
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    final = observer.state_until(topics, lambda s: isinstance(s, DoorState) and s.seq == 5)
    assert isinstance(final, DoorState)
    assert (final.door, final.strike) == (DoorPosition.CLOSED, StrikeState.LOCKED)
    assert simulator.strike_pulses == 1


def test_nobody_opens(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, behaviour=Behaviour.NOBODY_OPENS)

    observer.send(topics, PulseCommand(id="c1", ms=100))

    assert observer.ack(topics) == CommandAck.accepted("c1")
    assert shape(observer.event(topics)) == (EventType.STRIKE_RELEASED, 2, "c1")
    assert shape(observer.event(topics)) == (EventType.STRIKE_RELOCKED, 3, "c1")
    barrier(observer, topics)
    assert observer.pending(topics.event) == []
    assert simulator.door is DoorPosition.CLOSED
    assert simulator.strike_pulses == 1


def test_strike_fails_and_never_moves(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, behaviour=Behaviour.STRIKE_FAILS)

    observer.send(topics, PulseCommand(id="c1", ms=100))

    assert observer.ack(topics) == CommandAck.refused("c1", AckError.STRIKE_FAULT)
    assert shape(observer.event(topics)) == (EventType.STRIKE_FAULT, 2, "c1")
    barrier(observer, topics)
    assert observer.pending(topics.event) == []
    assert simulator.strike_pulses == 0
    assert simulator.strike is StrikeState.LOCKED


def test_behaviour_changes_at_run_time(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, **FAST)

    simulator.set_behaviour(Behaviour.STRIKE_FAILS)
    simulator.wait_for(lambda s: s.behaviour is Behaviour.STRIKE_FAILS, TIMEOUT)
    observer.send(topics, PulseCommand(id="c1", ms=100))

    assert observer.ack(topics) == CommandAck.refused("c1", AckError.STRIKE_FAULT)
    assert simulator.strike_pulses == 0


def test_offline_fires_the_retained_last_will_and_comes_back(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, **FAST)
    boot = simulator.boot

    simulator.set_behaviour(Behaviour.OFFLINE)

    assert observer.state_until(topics, lambda s: not s.online) == DoorOffline()
    simulator.wait_for(lambda s: not s.online and s.behaviour is Behaviour.OFFLINE, TIMEOUT)
    late = door_site.observer(topics.state)
    retained = late.next(topics.state)
    assert retained.retain
    assert parse_state(retained.payload) == DoorOffline()

    # Clean session: a command sent while the controller is away is never executed later.
    observer.send(topics, PulseCommand(id="while-away", ms=100))
    simulator.set_behaviour(Behaviour.WALK_THROUGH)

    back = observer.state_until(topics, lambda s: s.online)
    assert isinstance(back, DoorState)
    assert (back.boot, back.seq) == (boot, 1)
    simulator.wait_for(lambda s: s.online, TIMEOUT)
    observer.send(topics, PulseCommand(id="c2", ms=100))
    assert observer.ack(topics) == CommandAck.accepted("c2")
    assert shape(observer.event(topics)) == (EventType.STRIKE_RELEASED, 2, "c2")
    assert simulator.strike_pulses == 1


def test_forced_open_then_closed(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site)

    simulator.force_open()

    assert shape(observer.event(topics)) == (EventType.FORCED_OPEN, 2, None)
    state = observer.state(topics)
    assert isinstance(state, DoorState)
    assert (state.door, state.strike, state.seq) == (DoorPosition.OPEN, StrikeState.LOCKED, 2)
    simulator.wait_for(lambda s: s.door is DoorPosition.OPEN, TIMEOUT)

    simulator.close_door()

    assert shape(observer.event(topics)) == (EventType.DOOR_CLOSED, 3, None)
    simulator.wait_for(lambda s: s.door is DoorPosition.CLOSED, TIMEOUT)
    assert simulator.strike_pulses == 0


def test_held_open_is_reported_once(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, held_open_s=0.2)

    simulator.force_open()

    assert shape(observer.event(topics)) == (EventType.FORCED_OPEN, 2, None)
    assert shape(observer.event(topics)) == (EventType.HELD_OPEN, 3, None)
    simulator.close_door()
    assert shape(observer.event(topics)) == (EventType.DOOR_CLOSED, 4, None)
    barrier(observer, topics)
    assert observer.pending(topics.event) == []


def test_duplicate_command_id_is_acked_again_but_pulses_once(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, behaviour=Behaviour.NOBODY_OPENS)
    command = PulseCommand(id="dup", ms=100)

    observer.send(topics, command)
    observer.send(topics, command)  # while the first pulse is still running
    assert observer.ack(topics) == CommandAck.accepted("dup")
    assert observer.ack(topics) == CommandAck.accepted("dup")
    assert shape(observer.event(topics)) == (EventType.STRIKE_RELEASED, 2, "dup")
    assert shape(observer.event(topics)) == (EventType.STRIKE_RELOCKED, 3, "dup")
    observer.send(topics, command)  # and long after it ended
    assert observer.ack(topics) == CommandAck.accepted("dup")
    barrier(observer, topics)

    assert observer.pending(topics.event) == []
    assert simulator.strike_pulses == 1


def test_status_republishes_the_retained_state(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site)
    simulator.force_open()
    assert shape(observer.event(topics)) == (EventType.FORCED_OPEN, 2, None)
    observer.state(topics)

    observer.send(topics, StatusCommand(id="s1"))

    assert observer.ack(topics) == CommandAck.accepted("s1")
    assert observer.state(topics) == DoorState(
        boot=simulator.boot,
        seq=2,
        door=DoorPosition.OPEN,
        strike=StrikeState.LOCKED,
        fw="sim-1.0",
    )
    late = door_site.observer(topics.state)
    retained = late.next(topics.state)
    assert retained.retain
    state = parse_state(retained.payload)
    assert isinstance(state, DoorState)
    assert (state.boot, state.seq, state.door) == (simulator.boot, 2, DoorPosition.OPEN)


def test_malformed_commands(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, **FAST)

    observer.publish(topics.cmd, b'{"v":1,"id":"bad1","op":"pulse","relay":1,"ms":5}')
    assert observer.ack(topics) == CommandAck.refused("bad1", AckError.BAD_COMMAND)
    observer.publish(topics.cmd, b"\xff not json")
    observer.publish(topics.cmd, b'{"v":1,"op":"pulse","relay":1,"ms":3000}')
    observer.publish(topics.cmd, b"{" + b" " * 5000 + b"}")
    barrier(observer, topics)

    assert observer.pending(topics.ack) == []
    assert observer.pending(topics.event) == []
    assert simulator.strike_pulses == 0


def test_stop_publishes_offline_and_disconnects(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site)

    simulator.stop()

    assert observer.state_until(topics, lambda s: not s.online) == DoorOffline()
    assert not simulator.online
    late = door_site.observer(topics.state)
    assert parse_state(late.next(topics.state).payload) == DoorOffline()
    simulator.stop()  # twice is harmless
    with pytest.raises(RuntimeError):
        simulator.force_open()
    with pytest.raises(RuntimeError):
        simulator.wait_for(lambda s: s.online, 0.01)


def test_reboot_starts_a_new_boot(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, behaviour=Behaviour.NOBODY_OPENS)
    observer.send(topics, PulseCommand(id="c1", ms=100))
    assert observer.ack(topics) == CommandAck.accepted("c1")
    old_boot = simulator.boot

    simulator.reboot()

    assert observer.state_until(topics, lambda s: not s.online) == DoorOffline()
    events: list[DoorEvent] = []
    while not events or events[-1].type is not EventType.BOOT:
        events.append(observer.event(topics))
    assert events[-1].boot != old_boot
    assert events[-1].seq == 1
    new_state = observer.state_until(topics, lambda s: s.online)
    assert isinstance(new_state, DoorState)
    assert (new_state.boot, new_state.seq) == (events[-1].boot, 1)
    # Ids are forgotten with the old boot: the same id pulses again.
    simulator.wait_for(lambda s: s.online, TIMEOUT)
    observer.send(topics, PulseCommand(id="c1", ms=100))
    assert observer.ack(topics) == CommandAck.accepted("c1")
    assert shape(observer.event(topics)) == (EventType.STRIKE_RELEASED, 2, "c1")
    assert simulator.strike_pulses == 2


def test_mqtt_v5(door_site: DoorSite) -> None:
    simulator, observer, topics = start_watched(door_site, protocol=MqttProtocol.V5, **FAST)

    observer.send(topics, PulseCommand(id="c1", ms=100))

    assert observer.ack(topics) == CommandAck.accepted("c1")
    assert shape(observer.event(topics)) == (EventType.STRIKE_RELEASED, 2, "c1")
    assert shape(observer.event(topics)) == (EventType.DOOR_OPENED, 3, "c1")
    simulator.stop()
    assert observer.state_until(topics, lambda s: not s.online) == DoorOffline()


def test_run_simulators_until_stopped(door_site: DoorSite) -> None:
    devices = ["a", "b"]
    observer = door_site.observer(f"{door_site.prefix}/door/+/state")
    stop = threading.Event()
    runner = threading.Thread(
        target=run_simulators,
        args=(devices,),
        kwargs={
            "host": door_site.host,
            "port": door_site.port,
            "prefix": door_site.prefix,
            "stop": stop,
        },
    )
    runner.start()
    try:
        for device in devices:
            assert observer.state_until(door_site.topics(device), lambda s: s.online).online
    finally:
        stop.set()
        runner.join(TIMEOUT)
    assert not runner.is_alive()
    for device in devices:
        topics = door_site.topics(device)
        assert observer.state_until(topics, lambda s: not s.online) == DoorOffline()


def test_lifecycle_misuse(door_site: DoorSite) -> None:
    simulator = door_site.simulator("idle")
    simulator.stop()  # never started: nothing to do
    simulator.start()
    with pytest.raises(RuntimeError):
        simulator.start()


def test_unreachable_broker_keeps_retrying_and_still_stops() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    simulator = DoorSimulator(device="gate", port=port, prefix="nowhere")
    simulator.start()
    with pytest.raises(TimeoutError):
        simulator.wait_for(lambda s: s.online, 0.3)
    simulator.stop()
    assert not simulator.online
