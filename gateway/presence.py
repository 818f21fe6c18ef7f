"""Link presence: a retained online status with a last will, re-announced after every reconnect.

Each of the gateway's MQTT links publishes ``{"online":true,"v":1}`` retained on its status topic
once connected; the broker publishes the will ``{"online":false,"v":1}`` (also retained) when the
connection dies uncleanly, and a clean stop publishes it itself. The announcement doubles as the
readiness proof: a broker handles one connection's packets in order, so the announcement's PUBACK
means the subscriptions sent before it (on connect) are in place.

:class:`MqttLink` reports connections by a counter, not by a callback, so the presence task looks
at it a few times a second; that only bounds how soon a *reconnect* is noticed (the uplink then
resends what may have been lost), never the latency of an unlock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from cloud_sync.protocol import LinkError, MqttLink, Will

__all__ = ["OFFLINE", "ONLINE", "Presence"]

log = structlog.get_logger(__name__)

ONLINE = b'{"online":true,"v":1}'
OFFLINE = b'{"online":false,"v":1}'

_POLL_S = 0.1
_ANNOUNCE_TIMEOUT_S = 5.0
_OFFLINE_TIMEOUT_S = 1.0


class Presence:
    """Keeps one link's status topic truthful and says when the link is ready."""

    def __init__(
        self,
        name: str,
        link: MqttLink,
        topic: str,
        on_change: Callable[[], None],
        on_connect: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self._link = link
        self._topic = topic
        self._on_change = on_change
        self._on_connect = on_connect
        self.ready = False

    @staticmethod
    def will(topic: str) -> Will:
        """The last will to configure on the link."""
        return Will(topic, OFFLINE, qos=1, retain=True)

    async def run(self) -> None:
        """Announce after each (re)connection; track readiness forever."""
        announced = -1
        try:
            while True:
                await self._link.wait_connected()
                if self._link.connects != announced:
                    announced = self._link.connects
                    await self._publish(ONLINE, _ANNOUNCE_TIMEOUT_S)
                    log.info("link.up", link=self.name, connects=announced)
                    self._on_connect()
                    self._set(True)
                await asyncio.sleep(_POLL_S)
                if not self._link.connected:
                    log.warning("link.down", link=self.name)
                    self._set(False)
        finally:
            self._set(False)

    def _set(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self._on_change()

    async def announce_offline(self) -> None:
        """Publish the offline status before a clean disconnect (which fires no will)."""
        if not self._link.connected:
            return
        try:
            await self._publish(OFFLINE, _OFFLINE_TIMEOUT_S)
        except (TimeoutError, LinkError):
            log.warning("link.offline_unannounced", link=self.name)

    async def _publish(self, status: bytes, within: float) -> None:
        # Giving up on the PUBACK does not withdraw the message: paho still sends it, in order
        # with whatever this link publishes next, so a later status still lands after it.
        async with asyncio.timeout(within):
            await self._link.publish(self._topic, status, qos=1, retain=True)
