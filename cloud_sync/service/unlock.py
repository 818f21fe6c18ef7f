"""Remote unlock: turn an authorised request into a stored, audited, queued command.

The route guard has already asked the policy whether the caller may open this door; a refusal
ends the request there with 404 and nothing is stored or published. Here the command row (status
``queued``) and its audit record are written in one transaction — for a new unlock
(:meth:`UnlockService.unlock`) the same transaction in which the
:class:`~cloud_sync.service.dispatch.Dispatcher` numbers it, which then publishes it.

``Idempotency-Key``: a client that retries (a phone on a flaky network) sends the same key; the
same key from the same account returns the command it created the first time instead of opening
the door twice. The key is unique per account in the database, so two concurrent retries cannot
both create a command. Reusing a key for another door is a client bug and is refused (409).
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
from cloud_sync.service.errors import Conflict, InvalidRequest
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.policy import Principal
from cloud_sync.service.tables import Command

__all__ = ["ACTION", "DoorRow", "UnlockService"]

ACTION = "door.unlock"
_COMMANDS: Table = Command.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_INSERT = _COMMANDS.insert()


class DoorRow(Protocol):
    """What an unlock needs of a door (a Core row, or the ORM object)."""

    @property
    def id(self) -> int | None: ...

    @property
    def site_id(self) -> int: ...

    @property
    def gateway_id(self) -> str: ...

    @property
    def local_id(self) -> str: ...

    @property
    def pulse_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class UnlockService:
    """Creates unlock commands."""

    db: Database
    keys: CloudKeys
    command_ttl_ms: int

    async def unlock(
        self,
        dispatcher: Dispatcher,
        principal: Principal,
        door: DoorRow,
        *,
        now_ms: int,
        reason: str | None,
        reason_required: bool,
        idempotency_key: str | None,
    ) -> tuple[Command, CommandStatus, bool]:
        """Create, number, audit and publish an unlock: (command, its status, whether it is new).

        The command row, its sequence number and its audit record are one transaction (see
        :meth:`Dispatcher.submit`); an idempotent retry returns the earlier command unchanged.
        """
        command, detail, earlier = await self._prepare(
            principal, door, now_ms, reason, reason_required, idempotency_key
        )
        if earlier is not None:
            return earlier, CommandStatus(earlier.status), False

        async def record(conn: AsyncConnection) -> None:
            await self._record(conn, command, principal, detail, reason)

        try:
            status = await dispatcher.submit(command, {"pulse_ms": door.pulse_ms}, record)
        except IntegrityError as exc:
            earlier = await self._after_race(exc, principal, door, idempotency_key)
            return earlier, CommandStatus(earlier.status), False
        return command, status, True

    async def _prepare(
        self,
        principal: Principal,
        door: DoorRow,
        now_ms: int,
        reason: str | None,
        reason_required: bool,
        idempotency_key: str | None,
    ) -> tuple[Command, dict[str, object], Command | None]:
        if reason_required and not reason:
            # Staff opening a resident's door must say why; the reason goes to the audit log.
            raise InvalidRequest("a reason is required to open this door", code="reason_required")
        assert door.id is not None
        command = Command(
            id=uuid.uuid4().hex,
            site_id=door.site_id,
            gateway_id=door.gateway_id,
            target=door.local_id,
            door_id=door.id,
            account_id=principal.account_id,
            action=ACTION,
            status=CommandStatus.QUEUED.value,
            idempotency_key=idempotency_key,
            issued_at=now_ms,
            expires_at=now_ms + self.command_ttl_ms,
            updated_at=now_ms,
        )
        detail: dict[str, object] = {"command": command.id, "door": door.id}
        if reason:
            detail["reason"] = reason
        if idempotency_key is not None:
            earlier = await self._by_key(principal.account_id, idempotency_key)
            if earlier is not None:
                return command, detail, self._same_door(earlier, door)
        return command, detail, None

    async def _record(
        self,
        conn: AsyncConnection,
        command: Command,
        principal: Principal,
        detail: dict[str, object],
        reason: str | None,
    ) -> None:
        """Insert the command row and append its audit record, in the caller's transaction."""
        await conn.execute(
            _INSERT,
            {
                "id": command.id,
                "site_id": command.site_id,
                "gateway_id": command.gateway_id,
                "target": command.target,
                "door_id": command.door_id,
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
            action="door.unlock",
            obj=f"door:{command.door_id}",
            detail=detail,
            # A free-text reason may name people: sealed, readable by auditors only.
            seal_for=self.keys.audit_key if reason else None,
            ts=command.issued_at,
        )

    async def _after_race(
        self, exc: IntegrityError, principal: Principal, door: DoorRow, key: str | None
    ) -> Command:
        # A concurrent retry with the same key won the insert: answer with its command.
        if key is None:
            raise exc
        earlier = await self._by_key(principal.account_id, key)
        if earlier is None:
            raise exc
        return self._same_door(earlier, door)

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
    def _same_door(command: Command, door: DoorRow) -> Command:
        if command.door_id != door.id:
            raise Conflict("this Idempotency-Key was used for another door")
        return command
