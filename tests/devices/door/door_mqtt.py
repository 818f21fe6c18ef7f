"""Test helpers for the door simulator: an independent MQTT observer and a per-test site."""

from __future__ import annotations

import itertools
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.door import (
    CommandAck,
    DoorEvent,
    DoorOffline,
    DoorSimulator,
    DoorState,
    DoorTopics,
    Message,
    encode,
    parse_ack,
    parse_event,
    parse_state,
)

TIMEOUT = 5.0
"""How long a test waits for anything it expects from the broker."""


@dataclass(frozen=True)
class Received:
    """One message as the observer got it."""

    topic: str
    payload: bytes
    retain: bool
    order: int
    """Arrival position across every topic this observer receives."""


class Observer:
    """An independent MQTT client (paho on its own network thread) that records what arrives."""

    def __init__(self, host: str, port: int) -> None:
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"door-test-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[Received]] = {}
        self._arrivals = itertools.count()
        self._connected = threading.Event()
        self._subacked = threading.Condition()
        self._subacked_mids: set[int] = set()
        self._client.on_socket_open = self._on_socket_open
        self._client.on_connect = lambda *_: self._connected.set()
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        assert self._connected.wait(TIMEOUT), "observer could not connect"

    @staticmethod
    def _on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, *_: Any) -> None:
        with self._subacked:
            self._subacked_mids.add(mid)
            self._subacked.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # paho calls this on its one network thread, so the arrival counter needs no lock.
        received = Received(
            message.topic, bytes(message.payload), bool(message.retain), next(self._arrivals)
        )
        self._queue(message.topic).put(received)

    def _queue(self, topic: str) -> queue.Queue[Received]:
        with self._lock:
            return self._queues.setdefault(topic, queue.Queue())

    def subscribe(self, *topics: str) -> None:
        """Subscribe at QoS 1 and wait for the broker's SUBACK."""
        result, mid = self._client.subscribe([(topic, 1) for topic in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS
        with self._subacked:
            assert self._subacked.wait_for(lambda: mid in self._subacked_mids, TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def send(self, topics: DoorTopics, command: Message) -> None:
        """Send a command to a controller."""
        self.publish(topics.cmd, encode(command))

    def next(self, topic: str, timeout: float = TIMEOUT) -> Received:
        """The next message on `topic`, in arrival order."""
        try:
            return self._queue(topic).get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"nothing on {topic} within {timeout} s")

    def pending(self, topic: str) -> list[Received]:
        """Everything received on `topic` and not yet taken."""
        taken = []
        source = self._queue(topic)
        while True:
            try:
                taken.append(source.get_nowait())
            except queue.Empty:
                return taken

    def ack(self, topics: DoorTopics) -> CommandAck:
        """The next ack from a controller."""
        return parse_ack(self.next(topics.ack).payload)

    def event(self, topics: DoorTopics) -> DoorEvent:
        """The next event from a controller."""
        return parse_event(self.next(topics.event).payload)

    def state(self, topics: DoorTopics) -> DoorState | DoorOffline:
        """The next state message from a controller."""
        return parse_state(self.next(topics.state).payload)

    def state_until(
        self, topics: DoorTopics, predicate: Callable[[DoorState | DoorOffline], bool]
    ) -> DoorState | DoorOffline:
        """Skip state messages until one satisfies `predicate`."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            state = parse_state(self.next(topics.state, remaining).payload)
            if predicate(state):
                return state

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


@dataclass
class DoorSite:
    """One test's slice of the broker: a unique prefix, its simulators and observers."""

    host: str
    port: int
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:12]}")
    simulators: list[DoorSimulator] = field(default_factory=list)
    observers: list[Observer] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)

    def topics(self, device: str = "gate") -> DoorTopics:
        """The topics of `device` under this site's prefix."""
        self.devices.add(device)
        return DoorTopics(self.prefix, device)

    def simulator(self, device: str = "gate", **options: Any) -> DoorSimulator:
        """A simulator for `device` on this site (not started)."""
        self.devices.add(device)
        simulator = DoorSimulator(
            device=device, host=self.host, port=self.port, prefix=self.prefix, **options
        )
        self.simulators.append(simulator)
        return simulator

    def observer(self, *subscriptions: str) -> Observer:
        """A connected observer, subscribed to `subscriptions`."""
        observer = Observer(self.host, self.port)
        self.observers.append(observer)
        if subscriptions:
            observer.subscribe(*subscriptions)
        return observer

    def close(self) -> None:
        """Stop everything and clear this site's retained states."""
        try:
            for simulator in self.simulators:
                simulator.stop()
        finally:
            cleaner = Observer(self.host, self.port)
            try:
                for device in sorted(self.devices):
                    cleaner.publish(DoorTopics(self.prefix, device).state, b"", retain=True)
            finally:
                cleaner.close()
                for observer in self.observers:
                    observer.close()
