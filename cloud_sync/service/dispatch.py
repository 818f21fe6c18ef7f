"""Command dispatch: number, sign and publish queued commands in sequence order per gateway.

A gateway refuses any command whose ``seq`` is not above the highest it has accepted (its replay
guard). So for each gateway, sequence numbers must reach the broker in the order they were
assigned. Per gateway, :class:`Dispatcher` holds an asyncio lock across

1. assigning the next ``gateways.command_seq`` — an ``UPDATE … SET command_seq = command_seq + 1
   RETURNING``, which row-locks the gateway on PostgreSQL (the effect of ``SELECT … FOR UPDATE``,
   in one round trip) and takes the write lock on SQLite — and recording it on the command,
2. committing (so a crash can never reuse a number that may have reached the gateway),
3. signing and publishing at QoS 1, waiting for the broker's PUBACK,

and only then marks the command ``sent`` (one autocommit statement; a gateway report that
overtakes it is handled by :mod:`~cloud_sync.service.transitions`). Two concurrent commands for
one gateway are therefore published 41, 42 — never 42, 41.

Every new command goes through :meth:`Dispatcher.submit`: steps 1–2 are the same transaction
that inserts the command row and appends its audit record (one commit instead of two; the gateway
row is locked first, then the site's audit head, the order ingest takes them in as well). The
dispatcher is action-neutral: the signed body's ``target`` is ``Command.target`` (a door's or a
meter's local id on the gateway) and its ``args`` are what the caller passes (``{"pulse_ms": …}``
for ``door.unlock``, nothing for ``meter.read``).

**Several service instances.** The asyncio lock orders publishes within one process; the row lock
only orders the numbering. Two instances dispatching to the same gateway could still publish out
of order (A takes 41, B takes 42, B publishes first, the gateway refuses 41 as ``out_of_sequence``
and the API reports ``rejected``: a retry, never an unsafe open). The plan for scale-out: hold a
PostgreSQL advisory lock keyed by the gateway (``pg_advisory_lock``) on a dedicated connection
across steps 1–3 in place of the asyncio lock, or route each gateway's dispatch to one instance.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping

import structlog
from sqlalchemy import Table, bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_sync.protocol import (
    ACTIONS,
    CommandBody,
    CommandStatus,
    GatewayTopics,
    LinkError,
    MqttLink,
    sign_command,
)
from cloud_sync.service.db import Database
from cloud_sync.service.inbox import fail_parcel_of_command
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.state import Clock
from cloud_sync.service.tables import Command, Gateway
from cloud_sync.service.transitions import Moved, mark_sent, move
from cloud_sync.service.waiters import CommandWaiters

__all__ = ["Dispatcher"]

log = structlog.get_logger(__name__)

_S = CommandStatus
_GATEWAYS: Table = Gateway.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_NEXT_SEQ = (
    _GATEWAYS.update()
    .where(_GATEWAYS.c.id == bindparam("gw"))
    .values(command_seq=_GATEWAYS.c.command_seq + 1)
    .returning(_GATEWAYS.c.command_seq)
)


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

    async def submit(
        self,
        command: Command,
        args: Mapping[str, int | str],
        record: Callable[[AsyncConnection], Awaitable[None]],
    ) -> CommandStatus:
        """Store a NEW command numbered, then sign and publish it; the status it has afterwards.

        ``args`` become the signed body's ``args``; its ``target`` is ``command.target``. In one
        transaction, under the gateway's lock: take the gateway's next ``seq`` (row lock), set it
        on ``command``, and let ``record`` insert the command row and its audit record. A failing
        ``record`` (an idempotency-key race) rolls the number back with everything else.
        Publishing follows the commit, still under the lock, so publish order is ``seq`` order.

        ``queued`` afterwards means the broker did not confirm in time (the link is down): the
        message stays queued in the MQTT client and the sweeper expires the command if no report
        arrives. A command that cannot be signed as given (an unknown action, a target or args
        the wire refuses: a caller's bug) raises ``ValueError`` or ``SyncProtocolError`` before
        anything is stored.
        """
        if command.action not in ACTIONS:
            raise ValueError(f"no such command action: {command.action!r}")
        # Checked now, with a stand-in seq: after the commit it would be too late to refuse.
        unsigned = self._body(command, args, seq=1)
        async with self._locks[command.gateway_id]:
            async with self._db.begin() as conn:
                command.seq = await self._next_seq(conn, command.gateway_id)
                await record(conn)
            if command.seq is None:
                return _S(command.status)  # no such gateway: stays queued, the sweeper ends it
            return await self._publish(command, dataclasses.replace(unsigned, seq=command.seq))

    def _body(self, command: Command, args: Mapping[str, int | str], seq: int) -> CommandBody:
        return CommandBody(
            id=command.id,
            gateway=command.gateway_id,
            target=command.target,
            action=command.action,
            seq=seq,
            issued_at=command.issued_at,
            expires_at=command.expires_at,
            kid=self._keys.signing.kid,
            actor=f"account:{command.account_id}",
            args=dict(args),
        )

    async def _publish(self, command: Command, body: CommandBody) -> CommandStatus:
        """Sign and publish (the caller holds the gateway's lock), then mark the command sent."""
        if self._clock.now_ms() >= command.expires_at:
            # Waited too long (a slow lock or database): never publish a dead command.
            return await self._expire(command)
        payload = sign_command(self._keys.signing, body)
        topic = GatewayTopics(command.gateway_id, self._root).down_cmd
        try:
            await asyncio.wait_for(
                self._link.publish(topic, payload, qos=1), self._publish_timeout_s
            )
        except (TimeoutError, LinkError) as exc:
            log.warning("command not confirmed by the broker", command=command.id, error=str(exc))
            return _S.QUEUED
        self.published += 1
        now = self._clock.now_ms()
        # One statement, no audit record (sent is not terminal): its own transaction. When a
        # gateway report overtook us, the row is already further on: report that.
        async with self._db.autocommit() as conn:
            moved = await mark_sent(conn, command.id, now_ms=now)
        return self._changed(command, moved, now)

    async def _next_seq(self, conn: AsyncConnection, gateway_id: str) -> int | None:
        seq = (await conn.execute(_NEXT_SEQ, {"gw": gateway_id})).scalar_one_or_none()
        return None if seq is None else int(seq)

    async def _expire(self, command: Command) -> CommandStatus:
        now = self._clock.now_ms()
        async with self._db.begin() as conn:
            moved = await move(
                conn,
                command.id,
                [(_S.EXPIRED, "expired_before_dispatch")],
                now_ms=now,
                actor="system:dispatch",
            )
            if moved.changed and moved.status is not None:
                # A deposit that was never sent: its parcel is failed in the same commit.
                await fail_parcel_of_command(conn, command.id, moved.status, moved.reason, now)
        return self._changed(command, moved, now)

    def _changed(self, command: Command, moved: Moved, now: int) -> CommandStatus:
        status = moved.status or _S(command.status)
        if moved.changed:
            command.status, command.updated_at = status.value, now
            if moved.reason is not None:
                command.reason = moved.reason
            self._waiters.notify([command.id])
        return status
