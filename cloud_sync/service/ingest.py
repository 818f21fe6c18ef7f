"""Ingest: gateway event batches into the inbox, their effects applied once, then acknowledged.

For each message on ``{root}/gw/{gw}/up/events``:

1. decode the :class:`EventBatch`; a malformed one is counted, logged and MQTT-acknowledged (a
   poison message must never block the loop — the gateway's outbox still holds it);
2. check the topic's gateway is the batch's and is known (else drop; a mismatch raises an alarm);
3. in ONE transaction, store the events and apply the effects of the new ones
   (:class:`~cloud_sync.service.inbox.Inbox`); commit;
4. THEN publish the application-level :class:`Ack` of every sequence number in the batch,
   duplicates included (the only thing that lets the gateway forget events),
5. THEN MQTT-acknowledge the message (manual ack: a crash before the commit means the broker, or
   the gateway's outbox, delivers it again — and duplicates are harmless).

The long polls waiting on commands the batch changed are woken right after the commit (before
the acks: they depend only on what is committed), handed the committed status so they need not
read it back.

Retained messages on ``{root}/gw/{gw}/up/status`` update ``gateways.online`` / ``last_seen``.

Database errors are retried a few times; after that, and for anything unexpected, the message is
MQTT-acknowledged without an application ack, so the gateway's outbox sends it again later.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlmodel import col

from cloud_sync.protocol import (
    Ack,
    EventBatch,
    GatewayTopics,
    LinkError,
    Message,
    MqttLink,
    SyncProtocolError,
    cloud_subscriptions,
    coalesce_ranges,
    gateway_of,
)
from cloud_sync.service.db import Database
from cloud_sync.service.inbox import Applied, Inbox, UnknownGateway
from cloud_sync.service.state import Clock
from cloud_sync.service.tables import Alarm, Gateway
from cloud_sync.service.waiters import CommandWaiters

__all__ = ["IngestStats", "Ingestor", "subscriptions"]

log = structlog.get_logger(__name__)

_RETRIES = 3


def subscriptions(root: str, share_group: str | None) -> list[str]:
    """What ingest subscribes to.

    Event batches go through the shared subscription (each batch to one instance). Status is
    subscribed unshared on every instance: brokers do not deliver retained messages to shared
    subscriptions (MQTT 5 §4.8.2), and every instance applying the same status is harmless.
    """
    events = [f for f in cloud_subscriptions(root, share_group) if f.endswith("/up/events")]
    status = [f for f in cloud_subscriptions(root, None) if f.endswith("/up/status")]
    return events + status


@dataclass
class IngestStats:
    """Counters for metrics and tests."""

    batches: int = 0
    events: int = 0
    duplicates: int = 0
    malformed: int = 0
    dropped: int = 0
    failed: int = 0
    gaps: int = 0
    statuses: int = 0


class Ingestor:
    """Consumes the link's incoming messages, one at a time, until cancelled."""

    def __init__(
        self,
        db: Database,
        link: MqttLink,
        clock: Clock,
        waiters: CommandWaiters,
        *,
        topic_root: str,
    ) -> None:
        self._db = db
        self._link = link
        self._clock = clock
        self._waiters = waiters
        self._root = topic_root
        self.stats = IngestStats()
        self._inbox = Inbox(db, clock)

    async def run(self) -> None:
        """Handle messages forever."""
        async for message in self._link.messages():
            await self.handle(message)

    async def handle(self, message: Message) -> None:
        """Handle one message; never raises for anything a peer can send."""
        try:
            gateway, kind = gateway_of(message.topic, self._root)
        except SyncProtocolError:
            self.stats.malformed += 1
            log.warning("message on an unexpected topic", topic=message.topic)
            self._link.ack(message)
            return
        try:
            if kind == "up/events":
                await self._handle_batch(gateway, message)
            elif kind == "up/status":
                await self._handle_status(gateway, message)
            else:
                self._link.ack(message)
        except Exception:
            # A bug of ours must not poison the loop with one message forever: log it, release
            # the message; the gateway resends whatever it has no application ack for.
            self.stats.failed += 1
            log.exception("handling a message failed", topic=message.topic)
            self._link.ack(message)

    # -- event batches -----------------------------------------------------------------------

    async def _handle_batch(self, gateway: str, message: Message) -> None:
        try:
            batch = EventBatch.decode(message.payload)
        except (SyncProtocolError, TypeError, ValueError) as exc:
            # TypeError/ValueError: the decoder should raise only SyncProtocolError, but a
            # non-string id still escapes as TypeError; either way the batch is the peer's fault.
            self.stats.malformed += 1
            log.warning("malformed event batch", gateway=gateway, error=str(exc))
            self._link.ack(message)
            return
        if batch.gateway != gateway:
            self.stats.dropped += 1
            log.warning("batch names another gateway", topic_gateway=gateway, batch=batch.gateway)
            await self._alarm_if_known(
                gateway,
                "gateway_mismatch",
                {"topic_gateway": gateway, "batch_gateway": batch.gateway},
            )
            self._link.ack(message)
            return
        applied = await self._store_with_retry(batch)
        if applied is None:
            self._link.ack(message)  # not stored: no application ack, so the gateway resends
            return
        # Committed: long polls may answer now, with the status committed (no re-read).
        self._waiters.notify(applied.changed_commands, applied.changed_commands)
        ack = Ack(coalesce_ranges([e.seq for e in batch.events]))
        try:
            await self._link.publish(GatewayTopics(gateway, self._root).down_ack, ack.encode(), 1)
        except LinkError as exc:
            log.warning(
                "ack not published; the gateway will resend", gateway=gateway, error=str(exc)
            )
        self._link.ack(message)
        self.stats.batches += 1
        self.stats.events += applied.inserted
        self.stats.duplicates += len(batch.events) - applied.inserted
        self.stats.gaps += applied.gaps

    async def _store_with_retry(self, batch: EventBatch) -> Applied | None:
        for attempt in range(1, _RETRIES + 1):
            try:
                return await self._inbox.store(batch)
            except UnknownGateway:
                self.stats.dropped += 1
                log.warning("batch from an unknown gateway dropped", gateway=batch.gateway)
                return None
            except Exception:
                # A lost database connection or a deadlock: retry a few times, then leave the
                # batch to the gateway's outbox (it resends what was never acknowledged).
                self.stats.failed += 1
                log.exception("storing a batch failed", gateway=batch.gateway, attempt=attempt)
                if attempt < _RETRIES:
                    await asyncio.sleep(0.05 * 4**attempt)
        return None

    async def _alarm_if_known(self, gateway: str, kind: str, detail: dict[str, Any]) -> None:
        try:
            async with self._db.session() as session:
                site_id = (
                    await session.execute(
                        select(col(Gateway.site_id)).where(col(Gateway.id) == gateway)
                    )
                ).scalar_one_or_none()
                if site_id is None:
                    return
                await session.execute(
                    insert(Alarm).values(
                        site_id=site_id,
                        gateway_id=gateway,
                        kind=kind,
                        detail=detail,
                        created_at=self._clock.now_ms(),
                    )
                )
                await session.commit()
        except Exception:
            log.exception("could not record an alarm", gateway=gateway, kind=kind)

    # -- retained gateway status -------------------------------------------------------------

    async def _handle_status(self, gateway: str, message: Message) -> None:
        online = _parse_status(message.payload)
        if online is None:
            if message.payload:  # an empty retained message only clears the retained status
                self.stats.malformed += 1
                log.warning("malformed gateway status", gateway=gateway)
            self._link.ack(message)
            return
        values: dict[str, Any] = {"online": online}
        if online:
            values["last_seen"] = self._clock.now_ms()
        try:
            async with self._db.session() as session:
                await session.execute(
                    update(Gateway).where(col(Gateway.id) == gateway).values(**values)
                )
                await session.commit()
            self.stats.statuses += 1
        except Exception:
            self.stats.failed += 1
            log.exception("storing a gateway status failed", gateway=gateway)
        self._link.ack(message)


def _parse_status(payload: bytes) -> bool | None:
    """``online`` / ``offline``, or JSON ``{"online": bool}`` / ``{"state": "online"}``."""
    if len(payload) > 1024:
        return None
    text = payload.decode("utf-8", "replace").strip()
    if text in ("online", "offline"):
        return text == "online"
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    online, state = obj.get("online"), obj.get("state")
    if isinstance(online, bool):
        return online
    if state in ("online", "offline"):
        return bool(state == "online")
    return None
