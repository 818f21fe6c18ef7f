"""On-demand meter reads: turn an authorised request into a stored, audited, queued command.

The route guard has already asked the policy whether the caller may read this meter now (a
resident of the meter's unit, or staff of the site); a refusal ends the request there with 404 and
nothing is stored or published. Here, as for a remote unlock (:mod:`cloud_sync.service.unlock`),
the command row (status ``queued``, action ``meter.read``, target the meter's local id) and its
audit record are written in the transaction in which the
:class:`~cloud_sync.service.dispatch.Dispatcher` numbers the command, which then signs and
publishes it. The gateway reads the meter ahead of its schedule, sends the reading as an ordinary
``meter.reading`` event and reports the command ``completed`` (or ``failed``).

``Idempotency-Key``: the same key from the same account returns the command it created the first
time (one read, however often a phone retries); reusing it for another meter or a door is 409.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from cloud_sync.protocol import CommandStatus
from cloud_sync.service import audit
from cloud_sync.service.db import Database
from cloud_sync.service.dispatch import Dispatcher
from cloud_sync.service.errors import Conflict
from cloud_sync.service.policy import Principal
from cloud_sync.service.tables import Command

__all__ = ["ACTION", "MeterReadService", "MeterRow"]

ACTION = "meter.read"
_COMMANDS: Table = Command.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_INSERT = _COMMANDS.insert()


class MeterRow(Protocol):
    """What an on-demand read needs of a meter (a Core row, or the ORM object)."""

    @property
    def id(self) -> int | None: ...

    @property
    def site_id(self) -> int: ...

    @property
    def gateway_id(self) -> str: ...

    @property
    def local_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class MeterReadService:
    """Creates ``meter.read`` commands."""

    db: Database
    command_ttl_ms: int

    async def read_now(
        self,
        dispatcher: Dispatcher,
        principal: Principal,
        meter: MeterRow,
        *,
        now_ms: int,
        idempotency_key: str | None,
    ) -> tuple[Command, CommandStatus, bool]:
        """Create, number, audit and publish a read: (command, its status, whether it is new).

        The command row, its sequence number and its audit record are one transaction (see
        :meth:`Dispatcher.submit`); an idempotent retry returns the earlier command unchanged.
        """
        if meter.id is None:
            raise ValueError("the meter has no id")
        if idempotency_key is not None:
            earlier = await self._by_key(principal.account_id, idempotency_key)
            if earlier is not None:
                return self._same_meter(earlier, meter), CommandStatus(earlier.status), False
        command = Command(
            id=uuid.uuid4().hex,
            site_id=meter.site_id,
            gateway_id=meter.gateway_id,
            target=meter.local_id,
            door_id=None,
            meter_id=meter.id,
            account_id=principal.account_id,
            action=ACTION,
            status=CommandStatus.QUEUED.value,
            idempotency_key=idempotency_key,
            issued_at=now_ms,
            expires_at=now_ms + self.command_ttl_ms,
            updated_at=now_ms,
        )

        async def record(conn: AsyncConnection) -> None:
            await self._record(conn, command, principal)

        try:
            # A read takes no arguments: the gateway reads the values configured for the meter.
            status = await dispatcher.submit(command, {}, record)
        except IntegrityError:
            # A concurrent retry with the same key won the insert: answer with its command.
            earlier = None
            if idempotency_key is not None:
                earlier = await self._by_key(principal.account_id, idempotency_key)
            if earlier is None:
                raise
            return self._same_meter(earlier, meter), CommandStatus(earlier.status), False
        return command, status, True

    async def _record(self, conn: AsyncConnection, command: Command, principal: Principal) -> None:
        """Insert the command row and append its audit record, in the caller's transaction."""
        await conn.execute(
            _INSERT,
            {
                "id": command.id,
                "site_id": command.site_id,
                "gateway_id": command.gateway_id,
                "target": command.target,
                "door_id": None,
                "meter_id": command.meter_id,
                "account_id": command.account_id,
                "action": command.action,
                "seq": command.seq,
                "status": command.status,
                "idempotency_key": command.idempotency_key,
                "issued_at": command.issued_at,
                "expires_at": command.expires_at,
                "updated_at": command.updated_at,
            },
        )
        await audit.append(
            conn,
            site_id=command.site_id,
            actor=principal.actor,
            action=ACTION,
            obj=f"meter:{command.meter_id}",
            detail={"command": command.id, "meter": command.meter_id},
            ts=command.issued_at,
        )

    async def _by_key(self, account_id: int, key: str) -> Command | None:
        async with self.db.session() as session:
            return (
                await session.execute(
                    select(Command).where(
                        col(Command.account_id) == account_id,
                        col(Command.idempotency_key) == key,
                    )
                )
            ).scalar_one_or_none()

    @staticmethod
    def _same_meter(command: Command, meter: MeterRow) -> Command:
        if command.action != ACTION or command.meter_id != meter.id:
            raise Conflict("this Idempotency-Key was used for another request")
        return command
