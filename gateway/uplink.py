"""The uplink: outbox rows to the cloud as event batches, forgotten only on the cloud's ack.

Sending is event-driven: the outbox tells the uplink the moment a row commits, so an unlock's
``opened`` leaves within one loop turn instead of waiting for a poll. Rows go out in ``seq`` order
in batches of up to ``batch_events``, with up to ``window`` batches awaiting the cloud's
application-level :class:`~cloud_sync.protocol.Ack` at once, so a large backlog drains at the
speed of the pipe rather than one round trip per batch. The sender does not wait for a batch's
PUBACK before sending the next; it only keeps at most ``window`` publishes unconfirmed by the
broker, so resends cannot pile up in the MQTT client behind a slow or stalled connection.

The broker's PUBACK proves nothing (a broker can lose what it acknowledged), so rows stay in the
outbox until an ``Ack`` names them. When the oldest batch in flight has waited ``ack_timeout_ms``
without one (counted from when it was sent or, if later, from when it became the oldest), or the
link reconnects, the uplink goes back and resends every pending row from the lowest seq
(go-back-N), doubling its patience up to ``max_backoff_ms`` until acks flow again. The cloud
inserts by event id, so a resend is harmless; that is what makes this simple scheme safe.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from cloud_sync.protocol import (
    Ack,
    Event,
    EventBatch,
    GatewayTopics,
    LinkError,
    Message,
    MqttLink,
    SyncProtocolError,
)
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.settings import UplinkSettings

__all__ = ["Uplink"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _InFlight:
    first: int
    last: int
    since: float  # when its ack timer started: when it was sent, or when it became the oldest


class Uplink:
    """Sends the outbox to the cloud and applies the cloud's acks."""

    def __init__(
        self,
        link: MqttLink,
        topics: GatewayTopics,
        outbox: Outbox,
        settings: UplinkSettings,
        metrics: GatewayMetrics,
    ) -> None:
        self._link = link
        self._topics = topics
        self._outbox = outbox
        self._settings = settings
        self._metrics = metrics
        self._base_timeout = settings.ack_timeout_ms / 1000
        self._max_timeout = settings.max_backoff_ms / 1000
        self._timeout = self._base_timeout
        self._cursor = 0  # highest seq sent in the current round
        self._window: list[_InFlight] = []
        self._unconfirmed: set[asyncio.Task[None]] = set()  # publishes awaiting their PUBACK
        self._wake = asyncio.Event()
        outbox.add_listener(self._on_appended)

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet fully acknowledged."""
        return len(self._window)

    def _on_appended(self, event: Event) -> None:
        self._wake.set()

    def on_link_up(self) -> None:
        """The cloud link (re)connected: after a reconnect, resend what may have been lost."""
        # Batches sent on the first connection are still on it; only a drop can lose them.
        if self._link.connects > 1:
            log.info("uplink.resend_after_reconnect", depth=self._outbox.depth)
            self.resend_all()
        self._wake.set()  # rows may have waited for the link

    def resend_all(self) -> None:
        """Go back and send every pending row again (after a reconnect or an ack timeout)."""
        self._cursor = 0
        self._window.clear()
        self._wake.set()

    def on_ack(self, message: Message) -> None:
        """Apply an ``Ack`` from ``down/ack``: delete what it names, open the window."""
        try:
            ack = Ack.decode(message.payload)
        except SyncProtocolError as exc:
            self._metrics.bad_messages.labels("cloud").inc()
            log.warning("uplink.bad_ack", reason=exc.reason)
            return
        deleted = self._outbox.acknowledge(ack.ranges)
        if deleted:
            self._timeout = self._base_timeout
        oldest = self._window[0] if self._window else None
        self._window = [b for b in self._window if self._outbox.any_between(b.first, b.last)]
        if self._window and self._window[0] is not oldest:
            # The oldest batch is through; the next one's timer starts now. Counting from its
            # send would charge it for the batches queued ahead of it on a slow connection.
            self._window[0].since = asyncio.get_running_loop().time()
        self._wake.set()

    async def run(self) -> None:
        """Send forever."""
        # The group owns the publishes still awaiting a PUBACK: they end when the uplink does.
        async with asyncio.TaskGroup() as publishes:
            await self._send_forever(publishes)

    async def _send_forever(self, publishes: asyncio.TaskGroup) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            if self._window and now - self._window[0].since >= self._timeout:
                log.info(
                    "uplink.resend",
                    after_s=round(self._timeout, 3),
                    from_seq=self._window[0].first,
                    depth=self._outbox.depth,
                )
                self._metrics.batch_resends.inc()
                self._timeout = min(self._timeout * 2, self._max_timeout)
                self.resend_all()
            while self._may_send():
                events = self._outbox.pending(self._settings.batch_events, after=self._cursor)
                if not events:
                    break
                self._send(publishes, events, loop.time())
                # Let that publish start and the rest of the gateway run before the next batch.
                await asyncio.sleep(0)
            if self._window:
                wait = self._window[0].since + self._timeout - loop.time()
                if wait <= 0:
                    continue
            else:
                wait = None
            # asyncio.timeout, not wait_for: on 3.11 wait_for can turn a cancellation that races
            # its timeout into a TimeoutError, which this loop would swallow and never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _may_send(self) -> bool:
        limit = self._settings.window
        return len(self._window) < limit and len(self._unconfirmed) < limit and self._link.connected

    def _send(self, publishes: asyncio.TaskGroup, events: list[Event], now: float) -> None:
        payload = EventBatch(self._topics.gateway, tuple(events)).encode()
        self._cursor = events[-1].seq
        self._window.append(_InFlight(events[0].seq, events[-1].seq, now))
        self._metrics.batches_sent.inc()
        # Tasks take their first step in the order they were created, and MqttLink.publish hands
        # the message to paho in its first step: batches go out in seq order.
        task = publishes.create_task(self._publish(payload, events[0].seq))
        self._unconfirmed.add(task)
        task.add_done_callback(self._confirmed)

    def _confirmed(self, task: asyncio.Task[None]) -> None:
        self._unconfirmed.discard(task)
        self._wake.set()

    async def _publish(self, payload: bytes, first: int) -> None:
        try:
            # Bounded, so that a broker that never answers cannot hold a place in the window;
            # giving up here leaves the message with paho and changes nothing else.
            async with asyncio.timeout(self._max_timeout):
                await self._link.publish(self._topics.up_events, payload)
        except (TimeoutError, LinkError) as exc:
            log.info("uplink.publish_unconfirmed", first=first, error=repr(exc))
