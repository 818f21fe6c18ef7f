"""Command dispatch: number, sign and publish queued commands in sequence order per gateway.

A gateway refuses any command whose ``seq`` is not above the highest it has accepted (its replay
guard). So for each gateway, sequence numbers must reach the broker in the order they were
assigned. Per gateway, :class:`Dispatcher` holds an asyncio lock across

1. assigning the next ``gateways.command_seq`` — an ``UPDATE … SET command_seq = command_seq + 1
   RETURNING``, which row-locks the gateway on PostgreSQL (the effect of ``SELECT … FOR UPDATE``,
   in one round trip) and takes the write lock on SQLite — and recording it on the command,
2. committing (so a crash can never reuse a number that may have reached the gateway),
3. signing and publishing at QoS 1, waiting for the broker's PUBACK,

and only then marks the command ``sent``. Two concurrent unlocks of doors on one gateway are
therefore published 41, 42 — never 42, 41.

**Several service instances.** The asyncio lock orders publishes within one process; the row lock
only orders the numbering. Two instances dispatching to the same gateway could still publish out
of order (A takes 41, B takes 42, B publishes first, the gateway refuses 41 as ``out_of_sequence``
and the API reports ``rejected``: a retry, never an unsafe open). The plan for scale-out: hold a
PostgreSQL advisory lock keyed by the gateway (``pg_advisory_lock``) on a dedicated connection
across steps 1–3 in place of the asyncio lock, or route each gateway's dispatch to one instance.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import structlog
from sqlalchemy import update
from sqlmodel import col

from cloud_sync.protocol import (
    CommandBody,
    CommandStatus,
    GatewayTopics,
    LinkError,
    MqttLink,
    sign_command,
)
from cloud_sync.service.db import Database
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.state import Clock
from cloud_sync.service.tables import Command, Door, Gateway
from cloud_sync.service.transitions import move
from cloud_sync.service.waiters import CommandWaiters

__all__ = ["Dispatcher"]

log = structlog.get_logger(__name__)

_S = CommandStatus


class Dispatcher:
    """Publishes commands to gateways, in order."""

    def __init__(
        self,
        db: Database,
        keys: CloudKeys,
        link: MqttLink,
        clock: Clock,
        waiters: CommandWaiters,
        *,
        topic_root: str,
        publish_timeout_ms: int,
    ) -> None:
        self._db = db
        self._keys = keys
        self._link = link
        self._clock = clock
        self._waiters = waiters
        self._root = topic_root
        self._publish_timeout_s = publish_timeout_ms / 1000
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.published = 0

    async def dispatch(self, command: Command, door: Door) -> CommandStatus:
        """Number, sign and publish a queued command; the status it has afterwards.

        ``queued`` means the broker did not confirm in time (the link is down): the message stays
        queued in the MQTT client and the sweeper expires the command if no report arrives.
        """
        async with self._locks[command.gateway_id]:
            now = self._clock.now_ms()
            if now >= command.expires_at:
                # Waited too long (a slow lock or database): never publish a dead command.
                return await self._finish(command, _S.EXPIRED, "expired_before_dispatch")
            seq = await self._assign_seq(command)
            if seq is None:
                return _S(command.status)
            body = CommandBody(
                id=command.id,
                gateway=command.gateway_id,
                target=door.local_id,
                action=command.action,
                seq=seq,
                issued_at=command.issued_at,
                expires_at=command.expires_at,
                kid=self._keys.signing.kid,
                actor=f"account:{command.account_id}",
                args={"pulse_ms": door.pulse_ms},
            )
            payload = sign_command(self._keys.signing, body)
            topic = GatewayTopics(command.gateway_id, self._root).down_cmd
            try:
                await asyncio.wait_for(
                    self._link.publish(topic, payload, qos=1), self._publish_timeout_s
                )
            except (TimeoutError, LinkError) as exc:
                log.warning(
                    "command not confirmed by the broker", command=command.id, error=str(exc)
                )
                return _S.QUEUED
            self.published += 1
        return await self._finish(command, _S.SENT, None, seen=_S.QUEUED)

    async def _assign_seq(self, command: Command) -> int | None:
        async with self._db.session() as session:
            seq = (
                await session.execute(
                    update(Gateway)
                    .where(col(Gateway.id) == command.gateway_id)
                    .values(command_seq=col(Gateway.command_seq) + 1)
                    .returning(col(Gateway.command_seq))
                )
            ).scalar_one_or_none()
            if seq is None:
                return None
            claimed = (
                await session.execute(
                    update(Command)
                    .where(
                        col(Command.id) == command.id,
                        col(Command.status) == _S.QUEUED.value,
                        col(Command.seq).is_(None),
                    )
                    .values(seq=seq)
                    .returning(col(Command.id))
                )
            ).scalar_one_or_none()
            if claimed is None:
                # Already numbered (dispatched twice) or finished meanwhile: publish nothing.
                await session.rollback()
                return None
            await session.commit()
        command.seq = seq
        return seq

    async def _finish(
        self,
        command: Command,
        to: CommandStatus,
        reason: str | None,
        *,
        seen: CommandStatus | None = None,
    ) -> CommandStatus:
        now = self._clock.now_ms()
        async with self._db.session() as session:
            moved = await move(
                session,
                command.id,
                seen or _S(command.status),
                [(to, reason)],
                now_ms=now,
                actor="system:dispatch",
            )
            await session.commit()
        # When a gateway report overtook us, the row is already further on: report that.
        status = moved.status or _S(command.status)
        if moved.changed:
            command.status, command.updated_at = status.value, now
            if reason is not None:
                command.reason = reason
            self._waiters.notify([command.id])
        return status
