"""Remote unlock: turn an authorised request into a stored, audited, queued command.

The route guard has already asked the policy whether the caller may open this door; a refusal
ends the request there with 404 and nothing is stored or published. Here the command row (status
``queued``) and its audit record are written in one transaction; the caller then hands the
command to the :class:`~cloud_sync.service.dispatch.Dispatcher`.

``Idempotency-Key``: a client that retries (a phone on a flaky network) sends the same key; the
same key from the same account returns the command it created the first time instead of opening
the door twice. The key is unique per account in the database, so two concurrent retries cannot
both create a command. Reusing a key for another door is a client bug and is refused (409).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from cloud_sync.protocol import CommandStatus
from cloud_sync.service import audit
from cloud_sync.service.db import Database
from cloud_sync.service.errors import Conflict, InvalidRequest
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.policy import Principal
from cloud_sync.service.tables import Command, Door

__all__ = ["ACTION", "UnlockService"]

ACTION = "door.unlock"


@dataclass(frozen=True, slots=True)
class UnlockService:
    """Creates unlock commands."""

    db: Database
    keys: CloudKeys
    command_ttl_ms: int

    async def create(
        self,
        principal: Principal,
        door: Door,
        *,
        now_ms: int,
        reason: str | None,
        reason_required: bool,
        idempotency_key: str | None,
    ) -> tuple[Command, bool]:
        """The command for this request and whether it is new (False: an idempotent retry)."""
        if reason_required and not reason:
            # Staff opening a resident's door must say why; the reason goes to the audit log.
            raise InvalidRequest("a reason is required to open this door", code="reason_required")
        if idempotency_key is not None:
            earlier = await self._by_key(principal.account_id, idempotency_key)
            if earlier is not None:
                return self._same_door(earlier, door), False
        assert door.id is not None
        command = Command(
            id=uuid.uuid4().hex,
            site_id=door.site_id,
            gateway_id=door.gateway_id,
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
        try:
            async with self.db.session() as session:
                session.add(command)
                await session.flush()
                await audit.append(
                    session,
                    site_id=door.site_id,
                    actor=principal.actor,
                    action="door.unlock",
                    obj=f"door:{door.id}",
                    detail=detail,
                    # A free-text reason may name people: sealed, readable by auditors only.
                    seal_for=self.keys.audit_key if reason else None,
                    ts=now_ms,
                )
                await session.commit()
        except IntegrityError:
            # A concurrent retry with the same key won the insert: answer with its command.
            if idempotency_key is None:
                raise
            earlier = await self._by_key(principal.account_id, idempotency_key)
            if earlier is None:
                raise
            return self._same_door(earlier, door), False
        return command, True

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
    def _same_door(command: Command, door: Door) -> Command:
        if command.door_id != door.id:
            raise Conflict("this Idempotency-Key was used for another door")
        return command
