"""An asyncio MQTT link over paho-mqtt — the only module of ours that imports paho on this side.

paho runs its network loop in its own thread; its callbacks only convert and hand off to the event
loop (``call_soon_threadsafe``), never run our code. What the link adds over paho:

* reconnects forever with exponential back-off plus jitter (so a fleet of gateways does not
  reconnect in lock-step after a broker restart), re-subscribing after each reconnect;
* ``TCP_NODELAY`` on the socket: without it a QoS 1 request/response waits out Nagle plus delayed
  ACK (~88 ms instead of ~0.4 ms on loopback);
* ``await publish(...)`` that resolves on the broker's PUBACK (which proves delivery to the broker,
  nothing more — durability is the outbox's job);
* incoming messages as :class:`Message` objects on an asyncio queue, and with ``manual_ack`` the
  broker's PUBACK is sent only when the consumer calls :meth:`MqttLink.ack` after committing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_sync.protocol.errors import LinkError

__all__ = ["Message", "MqttLink", "Will", "topic_matches"]


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming MQTT message, detached from paho."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


@dataclass(frozen=True, slots=True)
class Will:
    """A last-will message the broker publishes when the link dies uncleanly."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT wildcard matching (``+`` one level, ``#`` the rest)."""
    return bool(paho.topic_matches_sub(pattern, topic))


class MqttLink:
    """One MQTT connection, used from asyncio."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        protocol: Literal["3.1.1", "5"] = "3.1.1",
        clean: bool = True,
        keepalive: int = 30,
        will: Will | None = None,
        manual_ack: bool = False,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        max_inflight: int = 100,
        session_expiry_s: int = 86_400,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self._v5 = protocol == "5"
        self._clean = clean
        # MQTT 5 ends a session at disconnect unless the client asks for an expiry interval.
        self._session_expiry_s = 0 if clean else session_expiry_s
        self._keepalive = keepalive
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._backoff = min_backoff
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": client_id,
            "protocol": MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            "manual_ack": manual_ack,
        }
        if not self._v5:
            kwargs["clean_session"] = clean
        self._client = paho.Client(**kwargs)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        if username is not None:
            self._client.username_pw_set(username, password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        # paho annotates these as int but computes with floats; sub-second first retries matter.
        self._client.reconnect_delay_set(min_backoff, max_backoff)  # type: ignore[arg-type]
        self._client.on_socket_open = self._on_socket_open
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._subs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early: set[int] = set()
        self._nowait: set[int] = set()
        self._connected = asyncio.Event()
        self._started = False
        self.connects = 0
        self.disconnects = 0

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once (see :meth:`wait_connected`)."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._started = True
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry_s
            self._client.connect_async(
                self.host, self.port, self._keepalive, clean_start=self._clean, properties=props
            )
        else:
            self._client.connect_async(self.host, self.port, self._keepalive)
        self._client.loop_start()

    async def wait_connected(self, within: float | None = None) -> None:
        """Wait until the link is up (at most ``within`` seconds)."""
        try:
            await asyncio.wait_for(self._connected.wait(), within)
        except TimeoutError as exc:
            raise LinkError(f"not connected to {self.host}:{self.port} in {within}s") from exc

    @property
    def connected(self) -> bool:
        """Whether the link is up right now."""
        return self._connected.is_set()

    async def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the network thread."""
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._connected.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(LinkError("link stopped"))
        self._pending.clear()

    async def __aenter__(self) -> MqttLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- subscribe / publish / receive -------------------------------------------------------

    def subscribe(self, pattern: str, qos: int = 1) -> None:
        """Subscribe now (if connected) and again after every reconnect."""
        self._subs[pattern] = qos
        if self.connected:
            self._client.subscribe(pattern, qos)

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK."""
        if self._loop is None:
            raise LinkError("link not started")
        fut: asyncio.Future[None] = self._loop.create_future()
        # paho.publish takes paho's own lock, which its network thread holds while it reports a
        # PUBACK to _on_publish (which takes ours): never call paho while holding our lock.
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise LinkError(f"publish failed: {paho.error_string(info.rc)}")
        if qos == 0:
            self._expect_nowait(info.mid)
            return
        with self._lock:
            if info.mid in self._early:
                # The PUBACK overtook us (reported before we could register): already done.
                self._early.discard(info.mid)
                return
            self._nowait.discard(info.mid)  # a stale entry from before the mid counter wrapped
            self._pending[info.mid] = fut
        await fut

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None:
        """Queue a publish without waiting for its PUBACK."""
        info = self._client.publish(topic, payload, qos, retain)
        self._expect_nowait(info.mid)

    def _expect_nowait(self, mid: int) -> None:
        # Nobody waits for this publish's completion; make sure its report leaves no trace.
        with self._lock:
            if mid in self._early:
                self._early.discard(mid)
            else:
                self._nowait.add(mid)

    async def get(self) -> Message:
        """The next incoming message."""
        return await self._queue.get()

    async def messages(self) -> AsyncIterator[Message]:
        """Incoming messages, forever."""
        while True:
            yield await self._queue.get()

    def ack(self, message: Message) -> None:
        """Send the PUBACK for ``message`` (only meaningful with ``manual_ack``)."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # -- paho callbacks (network thread): convert, hand off, return --------------------------

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.is_failure:
            return
        self.connects += 1
        self._backoff = self._min_backoff
        for pattern, qos in self._subs.items():
            client.subscribe(pattern, qos)
        self._call(self._connected.set)

    def _jitter_sleep(self) -> None:
        # paho's own back-off is exponential but deterministic; add a random share so that many
        # clients do not reconnect in step. Bounded by max_backoff; runs on paho's thread.
        self._backoff = min(self._backoff * 2, self._max_backoff)
        time.sleep(random.uniform(0, self._backoff / 2))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        if self._started:
            self._jitter_sleep()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.disconnects += 1
        self._call(self._connected.clear)
        if self._started:
            self._jitter_sleep()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        m = Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid)
        self._call(self._queue.put_nowait, m)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        with self._lock:
            fut = self._pending.pop(mid, None)
            if fut is None and mid in self._nowait:
                self._nowait.discard(mid)
                return
            if fut is None:
                # The PUBACK arrived before publish()/publish_nowait() registered the mid.
                self._early.add(mid)
                return
        self._call(_resolve, fut)

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
