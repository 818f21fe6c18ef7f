"""One MQTT connection, driven by its owner's selector loop (paho-mqtt 2.x, external-loop API).

This is the only module of `devices.door` that imports paho. `MqttLink` runs no thread: it
registers paho's socket in the owner's `selectors` selector (through paho's ``on_socket_*``
callbacks), and the owner calls `on_ready_to_io` when the selector reports the socket, `flush`
after queueing messages, and `tick` about once a second for keep-alive. Every paho callback
therefore runs on the owner's thread, inside one of those calls.

The link knows MQTT, not doors: it connects with a clean session and a retained last will,
subscribes to one topic, reports upwards when it is ready (the subscription is acknowledged), when
a message arrives and when the connection is gone, and can leave either politely (DISCONNECT, no
will) or abruptly (TCP shutdown, so the broker publishes the will). Reconnection policy belongs to
the owner.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import selectors
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["LinkSettings", "MqttLink", "MqttProtocol"]

_log = logging.getLogger(__name__)


class MqttProtocol(enum.Enum):
    """The MQTT protocol version to connect with."""

    V311 = "3.1.1"
    """MQTT 3.1.1: the default, and what the embedded amqtt broker accepts."""

    V5 = "5"
    """MQTT 5.0."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Where and how to connect, what to leave as a will, and what to subscribe to."""

    host: str
    port: int
    client_id: str
    will_topic: str
    will_payload: bytes
    subscription: str
    protocol: MqttProtocol = MqttProtocol.V311
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30


class MqttLink:
    """A paho client bound to a selector; see the module docstring for the calling contract."""

    def __init__(
        self,
        settings: LinkSettings,
        selector: selectors.BaseSelector,
        *,
        on_ready: Callable[[], None],
        on_message: Callable[[bytes], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._selector = selector
        self._on_ready_cb = on_ready
        self._on_message_cb = on_message
        self._on_lost_cb = on_lost
        self._sock: mqtt.SocketLike | None = None
        self._ready = False
        self._subscribe_mid: int | None = None
        self._watched: set[int] = set()
        self._acknowledged: set[int] = set()
        self._client = self._make_client()

    @property
    def has_socket(self) -> bool:
        """A TCP connection exists (possibly still handshaking)."""
        return self._sock is not None

    @property
    def ready(self) -> bool:
        """Connected, and the subscription acknowledged by the broker."""
        return self._ready

    def connect(self) -> None:
        """Open the TCP connection and send CONNECT; raises `OSError` if the broker is unreachable.

        Blocks for the TCP handshake only (immediate on loopback); the rest arrives through the
        selector.
        """
        self._client.reconnect()

    def on_ready_to_io(self, mask: int) -> None:
        """Handle a selector event for this link's socket."""
        if mask & selectors.EVENT_READ:
            self._client.loop_read()
        if mask & selectors.EVENT_WRITE and self._sock is not None:
            self._client.loop_write()

    def flush(self) -> None:
        """Write what is queued now, rather than on the next selector turn."""
        if self._sock is not None and self._client.want_write():
            self._client.loop_write()

    def tick(self) -> None:
        """Keep-alive housekeeping: call about once a second while a socket exists."""
        if self._sock is not None:
            self._client.loop_misc()

    def publish(self, topic: str, payload: bytes, *, retain: bool, watch: bool = False) -> int:
        """Queue a QoS 1 publish and return its message id.

        With `watch`, `acknowledged(mid)` later tells whether the broker has PUBACKed it.
        """
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if watch:
            self._watched.add(info.mid)
        return info.mid

    def acknowledged(self, mid: int) -> bool:
        """Whether the broker has acknowledged the watched publish `mid`."""
        return mid in self._acknowledged

    def disconnect(self) -> None:
        """Leave politely: DISCONNECT, so the broker discards the will."""
        if self._sock is not None:
            self._client.disconnect()

    def drop(self) -> None:
        """Cut the TCP connection without DISCONNECT, so the broker publishes the will."""
        sock = self._sock
        if sock is None:
            return
        if isinstance(sock, socket.socket):
            # Already dead is fine: the broker has noticed, or will at keep-alive.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # paho reads end-of-stream, closes the socket and reports the loss. Bytes the broker sent
        # before the cut come first; the bound only guards against a socket that never ends.
        for _ in range(1000):
            if self._sock is None:
                return
            self._client.loop_read()
        raise RuntimeError("the MQTT connection did not close after shutdown")

    def renew(self) -> None:
        """Drop the connection and start over with a fresh client: nothing in flight survives."""
        self.drop()
        self._watched.clear()
        self._acknowledged.clear()
        self._client = self._make_client()

    # --- paho ----------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        settings = self._settings
        v5 = settings.protocol is MqttProtocol.V5
        # Clean session, always: whatever the broker queued while we were away is stale.
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.will_set(settings.will_topic, settings.will_payload, qos=1, retain=True)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        if v5:
            client.connect_async(
                settings.host, settings.port, settings.keepalive_s, clean_start=True
            )
        else:
            client.connect_async(settings.host, settings.port, settings.keepalive_s)
        return client

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike) -> None:
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Nagle plus delayed ACK turns a command/ack round trip from ~0.4 ms into ~90 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._selector.register(sock, selectors.EVENT_READ, self)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike) -> None:
        self._sock = None
        self._ready = False
        # Never registered, or the selector is already closed: nothing to undo.
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _on_socket_register_write(
        self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike
    ) -> None:
        self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def _on_socket_unregister_write(
        self, client: mqtt.Client, userdata: Any, sock: mqtt.SocketLike
    ) -> None:
        # paho may drop write interest for a socket already unregistered while closing.
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ, self)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            _log.warning("%s: broker refused: %s", self._settings.client_id, reason_code)
            return  # paho closes the socket next, and the loss is reported then
        self._subscribe_mid = client.subscribe(self._settings.subscription, qos=1)[1]

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        if any(code.is_failure for code in reason_codes):
            # Not ready, ever, on this connection: the owner sees it stay offline.
            _log.error("%s: subscription refused by the broker", self._settings.client_id)
            return
        self._ready = True
        self._on_ready_cb()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._on_message_cb(bytes(message.payload))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if mid in self._watched:
            self._watched.discard(mid)
            self._acknowledged.add(mid)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._ready = False
        self._subscribe_mid = None
        self._on_lost_cb(str(reason_code))
