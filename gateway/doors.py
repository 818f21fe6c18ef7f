"""The door driver: the gateway's side of the door-controller profile on the site broker.

It subscribes to every controller's ``ack``, ``event`` and ``state`` topics and

* turns each controller event into a ``door.event`` outbox row, committed before the MQTT message
  is acknowledged, dropping redeliveries by the controller's ``(boot, seq)``;
* turns changes of a controller's retained state (online snapshot or last will) into
  ``door.online`` rows;
* executes accepted ``door.unlock`` commands as timed pulses (:mod:`gateway.door_command`),
  matching the controller's acks and events to them by command id.

Payloads from the site are hostile: anything that fails the profile's parser is logged, counted
and acknowledged (so the broker does not redeliver it forever), and the driver carries on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import structlog

from cloud_sync.protocol import CommandBody, CommandStatus, LinkError, Message, MqttLink
from devices.door import (
    CommandAck,
    DoorEvent,
    DoorOffline,
    DoorProfileError,
    DoorState,
    DoorTopics,
    TopicKind,
    gateway_subscriptions,
    parse_ack,
    parse_event,
    parse_state,
    parse_topic,
)
from gateway.command_log import CommandLog
from gateway.door_command import Pulse, pulse_length
from gateway.errors import UnknownDoorError
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.settings import DoorSettings
from gateway.store import Store

__all__ = ["DOOR_EVENT", "DOOR_ONLINE", "DoorDriver"]

log = structlog.get_logger(__name__)

DOOR_EVENT = "door.event"
DOOR_ONLINE = "door.online"

_RECENT_EVENTS = 64


class _Recent:
    """The last few ``(boot, seq)`` pairs of one controller, to drop exact redeliveries.

    Only exact repeats are dropped. A high-water mark ("seq <= last") would be simpler, but one
    stray event with a huge seq would then silence every genuine event after it, and access events
    must never be dropped; a repeat this window misses reaches the cloud as a duplicate, which it
    can recognise by ``(door, boot, device_seq)``.
    """

    def __init__(self, boot: str | None = None, seq: int = 0) -> None:
        self._order: deque[tuple[str, int]] = deque()
        self._seen: set[tuple[str, int]] = set()
        if boot is not None:
            self.add(boot, seq)

    def add(self, boot: str, seq: int) -> bool:
        """Remember ``(boot, seq)``; False if it was already there."""
        key = (boot, seq)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > _RECENT_EVENTS:
            self._seen.discard(self._order.popleft())
        return True


class DoorDriver:
    """Drives the configured doors through their controllers on the site link."""

    def __init__(
        self,
        doors: Sequence[DoorSettings],
        prefix: str,
        link: MqttLink,
        store: Store,
        outbox: Outbox,
        commands: CommandLog,
        metrics: GatewayMetrics,
    ) -> None:
        self._prefix = prefix
        self._link = link
        self._store = store
        self._outbox = outbox
        self._commands = commands
        self._metrics = metrics
        self._by_id = {d.id: d for d in doors}
        self._by_device = {d.device: d for d in doors}
        self._topics = {d.device: DoorTopics(prefix, d.device) for d in doors}
        self._pending: dict[str, Pulse] = {}
        self._online: dict[str, bool | None] = {}
        self._recent: dict[str, _Recent] = {}
        for device, boot, seq, online in store.query(
            "SELECT device, boot, seq, online FROM controllers"
        ):
            self._online[device] = None if online is None else bool(online)
            self._recent[device] = _Recent(boot, seq)

    def subscribe(self) -> None:
        """Subscribe to every controller's acks, events and state (again after reconnects)."""
        for pattern in gateway_subscriptions(self._prefix):
            self._link.subscribe(pattern, qos=1)

    def online(self, door_id: str) -> bool | None:
        """Whether the door's controller is online (None: not heard from yet)."""
        door = self._by_id.get(door_id)
        if door is None:
            raise UnknownDoorError(door_id)
        return self._online.get(door.device)

    def doors(self) -> dict[str, str]:
        """Each door's controller state: ``online``, ``offline`` or ``unknown``."""
        names = {True: "online", False: "offline", None: "unknown"}
        return {door_id: names[self.online(door_id)] for door_id in self._by_id}

    # -- messages from the site --------------------------------------------------------------

    def handle(self, message: Message) -> None:
        """Process one message from the site broker, then acknowledge it to the broker."""
        try:
            if not message.payload:
                # An empty retained message is how MQTT clears a topic, not a report.
                self._link.ack(message)
                return
            topic = parse_topic(message.topic, self._prefix)
            door = self._by_device.get(topic.device)
            if door is None:
                log.debug("site.unknown_device", topic=message.topic)
            elif topic.kind is TopicKind.ACK:
                self._on_ack(door, parse_ack(message.payload))
            elif topic.kind is TopicKind.EVENT:
                self._on_event(door, parse_event(message.payload))
            elif topic.kind is TopicKind.STATE:
                self._on_state(door, parse_state(message.payload))
        except DoorProfileError as exc:
            self._metrics.bad_messages.labels("site").inc()
            log.warning(
                "site.bad_message",
                topic=message.topic[:200],
                reason=exc.reason.value,
                field=exc.field,
            )
        # After the commit (if any): the broker may forget the message only once it is stored.
        self._link.ack(message)

    def _on_ack(self, door: DoorSettings, ack: CommandAck) -> None:
        pulse = self._pending.get(ack.id)
        if pulse is not None and pulse.door.device == door.device:
            pulse.on_ack(ack)
        else:
            log.debug("door.stray_ack", door=door.id, command=ack.id)

    def _on_event(self, door: DoorSettings, event: DoorEvent) -> None:
        recent = self._recent.setdefault(door.device, _Recent())
        if not recent.add(event.boot, event.seq):
            log.debug("door.duplicate_event", door=door.id, seq=event.seq)
            return
        data: dict[str, object] = {
            "door": door.id,
            "kind": event.type.value,
            "device_seq": event.seq,
            "boot": event.boot,
        }
        if event.cmd is not None:
            data["command"] = event.cmd
        pulse = self._pending.get(event.cmd) if event.cmd is not None else None
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO controllers (device, boot, seq) VALUES (?, ?, ?)"
                " ON CONFLICT (device) DO UPDATE SET boot = excluded.boot, seq = excluded.seq",
                (door.device, event.boot, event.seq),
            )
            self._outbox.append(tx, DOOR_EVENT, data)
            if pulse is not None and pulse.door.device == door.device:
                # The door event and the command outcome it proves commit together.
                pulse.on_event(tx, event)

    def _on_state(self, door: DoorSettings, state: DoorState | DoorOffline) -> None:
        now_online = state.online
        if self._online.get(door.device) is now_online:
            return
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO controllers (device, online) VALUES (?, ?)"
                " ON CONFLICT (device) DO UPDATE SET online = excluded.online",
                (door.device, int(now_online)),
            )
            self._outbox.append(tx, DOOR_ONLINE, {"door": door.id, "online": now_online})
            if not now_online:
                for pulse in self._pending.values():
                    if pulse.door.device == door.device:
                        pulse.finish(CommandStatus.FAILED, "controller_offline", tx=tx)
        self._online[door.device] = now_online
        log.info("door.online" if now_online else "door.offline", door=door.id)

    # -- commands ------------------------------------------------------------------------------

    async def unlock(self, body: CommandBody) -> CommandStatus:
        """Execute an accepted ``door.unlock`` (already recorded as ``sent``); its final status."""
        door = self._by_id.get(body.target)
        if door is None:  # the replay guard refuses these; a second check costs nothing
            raise UnknownDoorError(body.target)
        pulse = Pulse(body, door, door.pulse_ms, self._commands)
        ms = pulse_length(body, door)
        if ms is None:
            pulse.finish(CommandStatus.FAILED, "bad_args")
            return pulse.status
        pulse.ms = ms
        if not self._link.connected:
            pulse.finish(CommandStatus.FAILED, "site_link_down")
            return pulse.status
        if self._online.get(door.device) is False:
            pulse.finish(CommandStatus.FAILED, "controller_offline")
            return pulse.status
        self._pending[body.id] = pulse
        try:
            status = await pulse.drive(lambda payload: self._publish(door, payload))
        finally:
            del self._pending[body.id]
        log.info("door.unlock", door=door.id, command=body.id, status=status.value)
        return status

    async def _publish(self, door: DoorSettings, payload: bytes) -> None:
        if not self._link.connected:
            raise LinkError("site link down")
        await self._link.publish(self._topics[door.device].cmd, payload, qos=0)

    async def run(self) -> None:
        """Consume the site link's messages forever."""
        while True:
            self.handle(await self._link.get())

    def in_flight(self) -> int:
        """How many unlocks are under way."""
        return len(self._pending)
