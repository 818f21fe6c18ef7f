"""Moving a stored command through its lifecycle: the one writer of ``commands.status``.

The rules live in :mod:`cloud_sync.protocol.lifecycle`; this module applies them to rows. Three
writers race for the same row — the dispatcher (``sent``), ingest (the gateway's reports) and the
expiry sweeper — possibly on different service instances. Each write is a compare-and-set
(``UPDATE … WHERE id = :id AND status = :seen``): if another writer got there first, the row is
re-read and the transition re-decided from the state it really is in, so no update is lost and
none is applied twice. The UPDATE is the first statement, which on SQLite takes the write lock
before anything is read (see :mod:`cloud_sync.service.db`).

Every terminal status is written to the audit log in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.protocol import TERMINAL, CommandStatus, IllegalTransition, advance
from cloud_sync.service import audit
from cloud_sync.service.tables import Command

__all__ = ["Moved", "Step", "move"]

_S = CommandStatus
_MAX_REASON = 64
_ATTEMPTS = 4
# Core, not ORM-enabled, UPDATEs: this is on the unlock's hot path and needs no session sync.
_COMMANDS: Table = Command.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped

Step = tuple[CommandStatus, str | None]


@dataclass(frozen=True, slots=True)
class Moved:
    """The outcome of :func:`move`: the status the row has now, and whether this call set it."""

    status: CommandStatus | None
    changed: bool


def _apply(seen: CommandStatus, steps: Sequence[Step], reported_by_gateway: bool) -> Step:
    """Walk ``steps`` through the lifecycle table; steps it forbids are skipped (late reports)."""
    state, reason = seen, None
    for to, why in steps:
        if reported_by_gateway and state is _S.QUEUED and to is not _S.SENT:
            # A report from the gateway proves it received the command, even when the report
            # overtook our own "sent" commit: take the step through "sent" the table requires.
            state = advance(state, _S.SENT)
        try:
            state = advance(state, to)
        except IllegalTransition:
            continue
        reason = why if why is not None else reason
    return state, reason


async def move(
    session: AsyncSession,
    command_id: str,
    seen: CommandStatus,
    steps: Sequence[Step],
    *,
    now_ms: int,
    actor: str,
    reported_by_gateway: bool = False,
) -> Moved:
    """Advance the command from ``seen`` (the status the caller last read) through ``steps``.

    ``steps`` are (status, reason) pairs in the order they happened; several reports of one
    batch (acknowledged, then opened) become one UPDATE. A step the lifecycle does not allow from
    the status the row really has — a late or duplicate report, a command already finished — is
    skipped. The caller commits.
    """
    for _ in range(_ATTEMPTS):
        new, reason = _apply(seen, steps, reported_by_gateway)
        if new is seen:
            return Moved(seen, False)
        values: dict[str, Any] = {"status": new.value, "updated_at": now_ms}
        if reason is not None:
            values["reason"] = reason[:_MAX_REASON]
        c = _COMMANDS.c
        result = await session.execute(
            _COMMANDS.update()
            .where(c.id == command_id, c.status == seen.value)
            .values(**values)
            .returning(c.site_id)
        )
        site_id = result.scalar_one_or_none()
        if site_id is not None:
            if new in TERMINAL:
                await audit.append(
                    session,
                    site_id=site_id,
                    actor=actor,
                    action=f"command.{new.value}",
                    obj=f"command:{command_id}",
                    detail={"reason": reason} if reason else None,
                    ts=now_ms,
                )
            return Moved(new, True)
        current = (
            await session.execute(select(c.status).where(c.id == command_id))
        ).scalar_one_or_none()
        if current is None:
            return Moved(None, False)
        seen = CommandStatus(current)
    return Moved(seen, False)
