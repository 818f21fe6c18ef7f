"""The uplink: outbox rows to the cloud as event batches, forgotten only on the cloud's ack.

Sending is event-driven: the outbox tells the uplink the moment a row commits, so an unlock's
``opened`` leaves within one loop turn instead of waiting for a poll. Rows go out in ``seq`` order
in batches of up to ``batch_events``, with up to ``window`` batches awaiting the cloud's
application-level :class:`~cloud_sync.protocol.Ack` at once, so a large backlog drains at the
speed of the pipe rather than one round trip per batch.

The broker's PUBACK proves nothing (a broker can lose what it acknowledged), so rows stay in the
outbox until an ``Ack`` names them. When the oldest batch in flight has waited ``ack_timeout_ms``
without one, or the link reconnects, the uplink goes back and resends every pending row from the
lowest seq (go-back-N), doubling its patience up to ``max_backoff_ms`` until acks flow again. The
cloud inserts by event id, so a resend is harmless; that is what makes this simple scheme safe.
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
from gateway.publisher import Publisher
from gateway.settings import UplinkSettings

__all__ = ["Uplink"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _InFlight:
    first: int
    last: int
    sent_at: float


class Uplink:
    """Sends the outbox to the cloud and applies the cloud's acks."""

    def __init__(
        self,
        link: MqttLink,
        publisher: Publisher,
        topics: GatewayTopics,
        outbox: Outbox,
        settings: UplinkSettings,
        metrics: GatewayMetrics,
    ) -> None:
        self._link = link
        self._publisher = publisher
        self._topics = topics
        self._outbox = outbox
        self._settings = settings
        self._metrics = metrics
        self._base_timeout = settings.ack_timeout_ms / 1000
        self._timeout = self._base_timeout
        self._cursor = 0  # highest seq sent in the current round
        self._window: list[_InFlight] = []
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
        self._window = [b for b in self._window if self._outbox.any_between(b.first, b.last)]
        self._wake.set()

    async def run(self) -> None:
        """Send forever."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            if self._window and now - self._window[0].sent_at >= self._timeout:
                log.info(
                    "uplink.resend",
                    after_s=round(self._timeout, 3),
                    from_seq=self._window[0].first,
                    depth=self._outbox.depth,
                )
                self._metrics.batch_resends.inc()
                self._timeout = min(self._timeout * 2, self._settings.max_backoff_ms / 1000)
                self.resend_all()
            while len(self._window) < self._settings.window and self._link.connected:
                events = self._outbox.pending(self._settings.batch_events, after=self._cursor)
                if not events:
                    break
                await self._send(events, loop.time())
            if self._window:
                wait = self._window[0].sent_at + self._timeout - loop.time()
                if wait <= 0:
                    continue
            else:
                wait = None
            # asyncio.timeout, not wait_for: on 3.11 wait_for can turn a cancellation that races
            # its timeout into a TimeoutError, which this loop would swallow and never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _send(self, events: list[Event], now: float) -> None:
        batch = EventBatch(self._topics.gateway, tuple(events))
        self._cursor = events[-1].seq
        self._window.append(_InFlight(events[0].seq, events[-1].seq, now))
        self._metrics.batches_sent.inc()
        try:
            # Waiting for the PUBACK paces us to the broker; bounded, because a link that drops
            # mid-publish may never answer, and the ack timeout resends anyway.
            await self._publisher.publish(
                self._topics.up_events, batch.encode(), wait=self._timeout
            )
        except (TimeoutError, LinkError) as exc:
            log.info("uplink.publish_unconfirmed", first=events[0].seq, error=str(exc))
