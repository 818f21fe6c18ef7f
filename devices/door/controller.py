"""The simulated door controller's logic as a state machine, with no I/O and no clock of its own.

`DoorController` models one controller: an electric strike on one relay, a door-position sensor,
the person who may or may not walk through, and the profile's rules (acks, events with a
per-boot sequence, retained state). Every input — a command payload, a hand on the door, the
passing of time — is a method call that takes the current monotonic time and returns the messages
to publish, in order, as `Outbound` values. The MQTT shell in `devices.door.simulator` owns the
clock and the connection; this module owns every decision, so it can be tested with a fake clock.

Timers are a handful of named deadlines rather than a general queue: each one can be pending at
most once (a later pulse *restarts* the pulse window instead of queuing a second one), so a dict
keyed by timer and a `min()` over at most four entries is the whole scheduler.

Rules worth knowing:

* A pulse while a pulse is active restarts the window with the new ``ms`` and hands it to the new
  command: ``strike_released`` is reported again with the new id (the strike does not move, so
  `strike_pulses` does not grow), and ``strike_relocked`` at the end carries the newest id.
* A command id seen before is answered with the same ack again and has no other effect, so a
  gateway's retry can never pulse the strike twice. The last `remembered_commands` ids are kept.
* The strike is wired to relay `strike_relay` (1 by default); a pulse for another relay is refused
  with ``bad_command`` because nothing this simulator models hangs on it.
* A payload whose id is readable but the rest is not is refused with ``bad_command``; a payload
  without a readable id cannot be answered and is dropped.
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from devices.door.behaviour import Behaviour
from devices.door.errors import DoorProfileError
from devices.door.profile import (
    MAX_RELAY,
    MIN_RELAY,
    AckError,
    Command,
    CommandAck,
    DoorEvent,
    DoorPosition,
    DoorState,
    EventType,
    PulseCommand,
    StatusCommand,
    StrikeState,
    parse_command,
)
from devices.door.topics import TopicKind

__all__ = ["DoorController", "Outbound"]

_log = logging.getLogger(__name__)


def _unix_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message the controller wants published, and the kind of topic it goes to."""

    kind: TopicKind
    message: CommandAck | DoorEvent | DoorState


class _Timer(enum.IntEnum):
    # The values break ties between deadlines that fall at the same instant: a walk-through that
    # ends exactly when the pulse does closes the door before the strike relocks.
    DOOR_OPEN = 0
    DOOR_CLOSE = 1
    PULSE_END = 2
    HELD_OPEN = 3


class DoorController:
    """One simulated door controller, driven by method calls (sans-I/O).

    Times passed in (`now`) are monotonic seconds; event timestamps come from `wall_clock_ms`.
    """

    def __init__(
        self,
        *,
        behaviour: Behaviour = Behaviour.WALK_THROUGH,
        open_delay_ms: int = 2,
        walk_through_ms: int = 1000,
        held_open_s: float = 30.0,
        strike_relay: int = 1,
        fw: str = "sim-1.0",
        boot: str | None = None,
        wall_clock_ms: Callable[[], int] = _unix_ms,
        remembered_commands: int = 1024,
    ) -> None:
        if open_delay_ms < 0 or walk_through_ms < 0:
            raise ValueError("open_delay_ms and walk_through_ms must be >= 0")
        if not held_open_s > 0:
            raise ValueError("held_open_s must be > 0")
        if not MIN_RELAY <= strike_relay <= MAX_RELAY:
            raise ValueError(f"strike_relay must be {MIN_RELAY}..{MAX_RELAY}")
        if remembered_commands < 1:
            raise ValueError("remembered_commands must be >= 1")
        self._behaviour = Behaviour(behaviour)
        self._open_delay_s = open_delay_ms / 1000
        self._walk_through_s = walk_through_ms / 1000
        self._held_open_s = held_open_s
        self._strike_relay = strike_relay
        self._fw = fw
        self._wall_clock_ms = wall_clock_ms
        self._remembered = remembered_commands
        self._boot = boot if boot is not None else secrets.token_hex(4)
        self._seq = 0
        self._door = DoorPosition.CLOSED
        self._strike = StrikeState.LOCKED
        self._strike_pulses = 0
        self._pulse_cmd: str | None = None
        self._timers: dict[_Timer, float] = {}
        self._answers: OrderedDict[str, CommandAck] = OrderedDict()
        self._powered = False
        self.state()  # fail now, not at the first publish, if `boot` or `fw` is malformed

    # --- what tests and the shell may look at ------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        """The current behaviour; assign to change it (no message results from the change)."""
        return self._behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        self._behaviour = Behaviour(value)

    @property
    def boot(self) -> str:
        """This boot's identifier: 8 hex digits, new at every `reboot`."""
        return self._boot

    @property
    def seq(self) -> int:
        """Sequence number of the last event of this boot (0 before the first)."""
        return self._seq

    @property
    def door(self) -> DoorPosition:
        """What the door sensor reads."""
        return self._door

    @property
    def strike(self) -> StrikeState:
        """Where the strike is."""
        return self._strike

    @property
    def strike_pulses(self) -> int:
        """How many times the strike actually moved from locked to released, over all boots."""
        return self._strike_pulses

    def state(self) -> DoorState:
        """The snapshot to retain on the ``state`` topic."""
        return DoorState(
            boot=self._boot, seq=self._seq, door=self._door, strike=self._strike, fw=self._fw
        )

    def next_deadline(self) -> float | None:
        """The monotonic time at which `advance` next has work to do, if any."""
        return min(self._timers.values(), default=None)

    # --- inputs --------------------------------------------------------------------------------

    def power_on(self, now: float) -> list[Outbound]:
        """Start this boot: a ``boot`` event (seq 1) and the first state."""
        if self._powered:
            raise RuntimeError("the controller is already powered on")
        self._powered = True
        if self._door is DoorPosition.OPEN:
            self._timers[_Timer.HELD_OPEN] = now + self._held_open_s
        return [self._event(EventType.BOOT), self._state_out()]

    def reboot(self, now: float) -> list[Outbound]:
        """Lose power and come back: new boot id, seq from 1, strike locked, commands forgotten.

        The door keeps its position: it is a physical thing, and the sensor reads it again.
        """
        self._boot = secrets.token_hex(4)
        self._seq = 0
        self._strike = StrikeState.LOCKED
        self._pulse_cmd = None
        self._timers.clear()
        self._answers.clear()
        self._powered = False
        return self.power_on(now)

    def receive(self, payload: bytes, now: float) -> list[Outbound]:
        """Handle the raw payload of a message on the ``cmd`` topic."""
        out = self.advance(now)
        try:
            command = parse_command(payload)
        except DoorProfileError as exc:
            if exc.message_id is None:
                _log.warning("dropping an unanswerable command: %s", exc)
                return out
            _log.warning("refusing command %s: %s", exc.message_id, exc)
            return [
                *out,
                Outbound(TopicKind.ACK, CommandAck.refused(exc.message_id, AckError.BAD_COMMAND)),
            ]
        return out + self.handle(command, now)

    def handle(self, command: Command, now: float) -> list[Outbound]:
        """Handle a parsed command."""
        out = self.advance(now)
        previous = self._answers.get(command.id)
        if previous is not None:
            self._answers.move_to_end(command.id)
            return [*out, Outbound(TopicKind.ACK, previous)]
        if isinstance(command, StatusCommand):
            ack = self._remember(CommandAck.accepted(command.id))
            return [*out, Outbound(TopicKind.ACK, ack), self._state_out()]
        return out + self._pulse(command, now)

    def force_open(self, now: float) -> list[Outbound]:
        """Someone pushes the door open by hand; it stays open until `close_door`.

        With the strike locked that is ``forced_open``; during a pulse it is an ordinary
        ``door_opened`` for the pulse's command.
        """
        out = self.advance(now)
        if self._door is DoorPosition.OPEN:
            return out
        # Whoever forced the door now holds it, so the simulated walk-through is called off.
        self._timers.pop(_Timer.DOOR_OPEN, None)
        self._timers.pop(_Timer.DOOR_CLOSE, None)
        return out + self._open(now)

    def close_door(self, now: float) -> list[Outbound]:
        """Someone shuts the door."""
        out = self.advance(now)
        if self._door is DoorPosition.CLOSED:
            return out
        return out + self._close()

    def advance(self, now: float) -> list[Outbound]:
        """Fire every timer due at or before `now`, earliest first."""
        out: list[Outbound] = []
        while True:
            due = [(deadline, timer) for timer, deadline in self._timers.items() if deadline <= now]
            if not due:
                return out
            deadline, timer = min(due)
            del self._timers[timer]
            # Follow-up timers count from the deadline, not from `now`, so a late loop
            # does not stretch the simulated walk-through.
            out += self._fire(timer, deadline)

    # --- the rules -----------------------------------------------------------------------------

    def _pulse(self, command: PulseCommand, now: float) -> list[Outbound]:
        if command.relay != self._strike_relay:
            ack = self._remember(CommandAck.refused(command.id, AckError.BAD_COMMAND))
            return [Outbound(TopicKind.ACK, ack)]
        if self._behaviour is Behaviour.STRIKE_FAILS:
            ack = self._remember(CommandAck.refused(command.id, AckError.STRIKE_FAULT))
            return [
                Outbound(TopicKind.ACK, ack),
                self._event(EventType.STRIKE_FAULT, command.id),
            ]
        ack = self._remember(CommandAck.accepted(command.id))
        out = [Outbound(TopicKind.ACK, ack)]
        if self._strike is StrikeState.LOCKED:
            self._strike = StrikeState.RELEASED
            self._strike_pulses += 1
        self._pulse_cmd = command.id
        self._timers[_Timer.PULSE_END] = now + command.ms / 1000
        out += [self._event(EventType.STRIKE_RELEASED, command.id), self._state_out()]
        # OFFLINE counts as "nobody there": a command cannot reach an offline controller anyway,
        # and a pulse already under way when it went offline keeps its walk-through.
        if self._behaviour is Behaviour.WALK_THROUGH and self._door is DoorPosition.CLOSED:
            self._timers[_Timer.DOOR_OPEN] = now + self._open_delay_s
        # With open_delay_ms=0 the door opens in this same call, right behind strike_released.
        return out + self.advance(now)

    def _fire(self, timer: _Timer, at: float) -> list[Outbound]:
        if timer is _Timer.DOOR_OPEN:
            # The person only gets through while the strike is still released.
            if self._strike is StrikeState.RELEASED and self._door is DoorPosition.CLOSED:
                self._timers[_Timer.DOOR_CLOSE] = at + self._walk_through_s
                return self._open(at)
            return []
        if timer is _Timer.DOOR_CLOSE:
            return self._close() if self._door is DoorPosition.OPEN else []
        if timer is _Timer.PULSE_END:
            command_id, self._pulse_cmd = self._pulse_cmd, None
            self._strike = StrikeState.LOCKED
            self._timers.pop(_Timer.DOOR_OPEN, None)
            return [self._event(EventType.STRIKE_RELOCKED, command_id), self._state_out()]
        # HELD_OPEN is armed when the door opens and disarmed when it closes.
        return [self._event(EventType.HELD_OPEN)] if self._door is DoorPosition.OPEN else []

    def _open(self, at: float) -> list[Outbound]:
        self._door = DoorPosition.OPEN
        self._timers[_Timer.HELD_OPEN] = at + self._held_open_s
        if self._strike is StrikeState.RELEASED:
            event = self._event(EventType.DOOR_OPENED, self._pulse_cmd)
        else:
            event = self._event(EventType.FORCED_OPEN)
        return [event, self._state_out()]

    def _close(self) -> list[Outbound]:
        self._door = DoorPosition.CLOSED
        self._timers.pop(_Timer.HELD_OPEN, None)
        self._timers.pop(_Timer.DOOR_CLOSE, None)
        return [self._event(EventType.DOOR_CLOSED), self._state_out()]

    def _event(self, event_type: EventType, command_id: str | None = None) -> Outbound:
        self._seq += 1
        event = DoorEvent(
            boot=self._boot,
            seq=self._seq,
            ts=self._wall_clock_ms(),
            type=event_type,
            cmd=command_id,
        )
        return Outbound(TopicKind.EVENT, event)

    def _state_out(self) -> Outbound:
        return Outbound(TopicKind.STATE, self.state())

    def _remember(self, ack: CommandAck) -> CommandAck:
        self._answers[ack.id] = ack
        if len(self._answers) > self._remembered:
            self._answers.popitem(last=False)
        return ack
