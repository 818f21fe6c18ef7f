"""Moving a stored command through its lifecycle: the one writer of ``commands.status``.

The rules live in :mod:`cloud_sync.protocol.lifecycle`; this module applies them to rows. Three
writers race for the same row — the dispatcher (``sent``), ingest (the gateway's reports) and the
expiry sweeper — possibly on different service instances. Each write is ONE ``UPDATE`` that decides
from the status the row really has when the statement runs: the outcome of the reported steps is
worked out in advance for every status the row could be in, and the statement picks the one that
applies (``SET status = CASE status WHEN 'queued' THEN … END … WHERE status IN (…)``). The row lock
the UPDATE takes (PostgreSQL re-evaluates the CASE on the latest row version after waiting for
it; SQLite holds the write lock) means no update is lost and none is applied twice, without a
read first or a compare-and-set retry. The UPDATE is the first statement, which on SQLite takes
the write lock before anything is read (see :mod:`cloud_sync.service.db`).

Every terminal status is written to the audit log in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, case, select

from cloud_sync.protocol import TERMINAL, CommandStatus, IllegalTransition, advance
from cloud_sync.service import audit
from cloud_sync.service.db import Connection, run
from cloud_sync.service.tables import Command

__all__ = ["CommandState", "Moved", "Step", "mark_sent", "move"]

_S = CommandStatus
_MAX_REASON = 64
# Core, not ORM-enabled, UPDATEs: this is on the unlock's hot path and needs no session sync.
_COMMANDS: Table = Command.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_OPEN = tuple(s for s in _S if s not in TERMINAL)

Step = tuple[CommandStatus, str | None]


@dataclass(frozen=True, slots=True)
class CommandState:
    """The mutable part of a command row, as committed."""

    status: CommandStatus
    updated_at: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class Moved:
    """The outcome of :func:`move`.

    ``status`` is the status the row has now (None: no such command); ``changed`` whether this
    call set it, and then ``reason`` and ``updated_at`` are the row's values as committed with it.
    """

    status: CommandStatus | None
    changed: bool
    reason: str | None = None
    updated_at: int | None = None

    @property
    def state(self) -> CommandState | None:
        """What this call committed (None when it changed nothing)."""
        if not self.changed or self.status is None or self.updated_at is None:
            return None
        return CommandState(self.status, self.updated_at, self.reason)


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


@lru_cache(maxsize=128)
def _update_for(
    shape: tuple[tuple[CommandStatus, CommandStatus, bool], ...], by_gateway: bool
) -> Any:
    """The UPDATE for one shape of outcome (start → new, with or without a reason), built once.

    Parameters: ``cid``, ``now``, ``gw`` (with ``by_gateway``), ``reason_<start>``.
    """
    c = _COMMANDS.c
    values: dict[str, Any] = {"updated_at": bindparam("now")}
    targets = {new for _, new, _ in shape}
    if len(targets) == 1:
        values["status"] = next(iter(targets)).value
    else:
        values["status"] = case({start.value: new.value for start, new, _ in shape}, value=c.status)
    reasons: dict[str, Any] = {
        start.value: bindparam(f"reason_{start.value}") for start, _, has in shape if has
    }
    if reasons:
        values["reason"] = case(reasons, value=c.status, else_=c.reason)
    where = [c.id == bindparam("cid"), c.status.in_([start.value for start, _, _ in shape])]
    if by_gateway:
        where.append(c.gateway_id == bindparam("gw"))
    return (
        _COMMANDS.update().where(*where).values(**values).returning(c.site_id, c.status, c.reason)
    )


async def move(
    conn: Connection,
    command_id: str,
    steps: Sequence[Step],
    *,
    now_ms: int,
    actor: str,
    reported_by_gateway: bool = False,
    gateway_id: str | None = None,
) -> Moved:
    """Advance the command through ``steps``, from whatever status it has; the caller commits.

    ``steps`` are (status, reason) pairs in the order they happened; several reports of one
    batch (acknowledged, then opened) become one UPDATE. A step the lifecycle does not allow from
    the status the row really has — a late or duplicate report, a command already finished — is
    skipped. With ``gateway_id`` only that gateway's command is touched (a gateway reports only
    on its own commands). Run it in a transaction: a terminal status appends an audit record.
    """
    outcomes: dict[CommandStatus, Step] = {}
    for start in _OPEN:
        new, reason = _apply(start, steps, reported_by_gateway)
        if new is not start:
            outcomes[start] = (new, reason[:_MAX_REASON] if reason is not None else None)
    c = _COMMANDS.c
    if outcomes:
        shape = tuple((start, new, why is not None) for start, (new, why) in outcomes.items())
        params: dict[str, Any] = {"cid": command_id, "now": now_ms}
        if gateway_id is not None:
            params["gw"] = gateway_id
        for start, (_, why) in outcomes.items():
            if why is not None:
                params[f"reason_{start.value}"] = why
        row = (await run(conn, _update_for(shape, gateway_id is not None), params)).one_or_none()
        if row is not None:
            site_id, status, reason = row
            new = _S(status)
            if new in TERMINAL:
                await audit.append(
                    conn,
                    site_id=site_id,
                    actor=actor,
                    action=f"command.{new.value}",
                    obj=f"command:{command_id}",
                    detail={"reason": reason} if reason else None,
                    ts=now_ms,
                )
            return Moved(new, True, reason, now_ms)
    # Nothing to do from the status the row has (or no such command): report where it is.
    query = select(c.status).where(c.id == command_id)
    if gateway_id is not None:
        query = query.where(c.gateway_id == gateway_id)
    current = (await run(conn, query)).scalar_one_or_none()  # rare: late or unknown reports
    return Moved(None if current is None else _S(current), False)


async def mark_sent(conn: Connection, command_id: str, *, now_ms: int) -> Moved:
    """``queued`` → ``sent`` after the broker's PUBACK.

    One statement that writes no audit record (``sent`` is not terminal), so it may run on an
    autocommit connection. If a gateway report or the sweeper got there first, nothing changes
    and the status the row has is returned.
    """
    return await move(conn, command_id, [(_S.SENT, None)], now_ms=now_ms, actor="system:dispatch")
