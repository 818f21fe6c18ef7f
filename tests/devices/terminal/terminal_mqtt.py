"""Test helpers for the terminal simulator: a stand-in gateway on the broker and a per-test site."""

from __future__ import annotations

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

from devices.terminal import (
    Display,
    Event,
    Frame,
    TerminalOffline,
    TerminalSimulator,
    TerminalState,
    TerminalTopics,
    encode,
    parse_event,
    parse_frame,
    parse_state,
    parse_topic,
)

TIMEOUT = 5.0
"""How long a test waits for anything it expects from the broker."""


@dataclass(frozen=True)
class Received:
    """One message as the gateway got it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


class Gateway:
    """An independent MQTT client (paho on its own network thread) playing the gateway."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.prefix = prefix
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"terminal-test-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[Received]] = {}
        self._connected = threading.Event()
        self._subacked = threading.Condition()
        self._subacked_mids: set[int] = set()
        self._client.on_socket_open = self._on_socket_open
        self._client.on_connect = lambda *_: self._connected.set()
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        assert self._connected.wait(TIMEOUT), "gateway could not connect"

    @staticmethod
    def _on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, *_: Any) -> None:
        with self._subacked:
            self._subacked_mids.add(mid)
            self._subacked.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(
            message.topic, bytes(message.payload), bool(message.retain), int(message.qos)
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

    def show(self, topics: TerminalTopics, display: Display) -> None:
        """Send a display message to a terminal."""
        self.publish(topics.display, encode(display))

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

    def event(self, topics: TerminalTopics) -> Event:
        """The next event from a terminal, parsed the way a gateway would."""
        received = self.next(topics.event)
        assert parse_topic(received.topic, self.prefix).device == topics.device
        return parse_event(received.payload)

    def frame(self, topics: TerminalTopics) -> Frame:
        """The next frame from a terminal, checked the way a gateway would."""
        received = self.next(topics.frame)
        device = parse_topic(received.topic, self.prefix).device
        return parse_frame(received.payload, device=device)

    def state_until(
        self,
        topics: TerminalTopics,
        predicate: Callable[[TerminalState | TerminalOffline], bool],
    ) -> TerminalState | TerminalOffline:
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
class TerminalSite:
    """One test's slice of the broker: a unique prefix, its simulators and gateways."""

    host: str
    port: int
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:12]}")
    simulators: list[TerminalSimulator] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)

    def topics(self, device: str = "term-a") -> TerminalTopics:
        """The topics of `device` under this site's prefix."""
        self.devices.add(device)
        return TerminalTopics(self.prefix, device)

    def simulator(self, device: str = "term-a", **options: Any) -> TerminalSimulator:
        """A simulator for `device` on this site (not started)."""
        self.devices.add(device)
        simulator = TerminalSimulator(
            device=device, host=self.host, port=self.port, prefix=self.prefix, **options
        )
        self.simulators.append(simulator)
        return simulator

    def gateway(self, *subscriptions: str) -> Gateway:
        """A connected gateway, subscribed to `subscriptions`."""
        gateway = Gateway(self.host, self.port, self.prefix)
        self.gateways.append(gateway)
        if subscriptions:
            gateway.subscribe(*subscriptions)
        return gateway

    def close(self) -> None:
        """Stop everything and clear this site's retained states."""
        try:
            for simulator in self.simulators:
                simulator.stop()
        finally:
            cleaner = Gateway(self.host, self.port, self.prefix)
            try:
                for device in sorted(self.devices):
                    cleaner.publish(TerminalTopics(self.prefix, device).state, b"", retain=True)
            finally:
                cleaner.close()
                for gateway in self.gateways:
                    gateway.close()
