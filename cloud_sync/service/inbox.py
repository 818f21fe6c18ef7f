"""The inbox: one gateway batch stored, and its new events' effects applied, in ONE transaction.

1. Touch the gateway row first (``UPDATE … RETURNING``, which also raises ``last_event_seq``): on
   PostgreSQL its row lock serialises the batches of one gateway across service instances; on
   SQLite the write lock is taken before anything is read (see :mod:`cloud_sync.service.db`).
2. Bulk-insert the events with ``ON CONFLICT DO NOTHING`` (SQLAlchemy Core, not ORM ``add``: a
   drained backlog must reach tens of thousands of events per second) and learn, via
   ``RETURNING``, which were new. Duplicates (by event id or by gateway sequence number) are
   skipped here and have no effect.
3. Apply the effects of the new events only:

   ``command.status`` {"command": "<32 hex>", "status": "acknowledged" | "opened" |
   "released_not_opened" | "failed" | "rejected", "reason"?}
       the command advances through the lifecycle (late reports change nothing);
   ``door.online`` {"door": local_id, "online": bool}
       ``doors.online``;
   ``door.event`` {"door", "kind", "device_seq", "boot", "command"?}
       kinds ``forced_open`` and ``held_open`` raise an alarm;
   ``gateway.alarm`` {"kind", ...}
       an alarm;
   ``gateway.started`` {"version"}, and any other type
       stored only.

   An event whose data is not of the expected shape is stored and logged, without effect.
4. Sequence gaps: a new event above ``last_event_seq + 1`` raises a ``sequence_gap`` alarm naming
   the missing range; late events that complete a reported range clear its alarm (batches of one
   gateway may be handled out of order by two instances of a shared subscription).
   ``last_event_seq`` only ever moves up.

Everything runs as SQLAlchemy Core on one connection (no ORM unit of work): a batch is about six
statements and one commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from cloud_sync.protocol import CommandStatus, Event, EventBatch
from cloud_sync.service.db import Database
from cloud_sync.service.state import Clock
from cloud_sync.service.tables import Alarm, Door, Gateway, GatewayEvent
from cloud_sync.service.transitions import CommandState, Step, move

__all__ = ["ALARM_DOOR_KINDS", "CLOUD_ALARM_KINDS", "Applied", "Inbox", "UnknownGateway"]

log = structlog.get_logger(__name__)

_S = CommandStatus
#: Door events that raise an alarm.
ALARM_DOOR_KINDS = frozenset({"forced_open", "held_open"})
#: Alarm kinds only the cloud raises.
CLOUD_ALARM_KINDS = frozenset({"sequence_gap", "gateway_mismatch"})
_REPORTABLE = frozenset(
    {_S.ACKNOWLEDGED, _S.OPENED, _S.RELEASED_NOT_OPENED, _S.FAILED, _S.REJECTED}
)
_REPORTS = {s.value: s for s in _REPORTABLE}
_ALARMS: Table = Alarm.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_EVENTS: Table = GatewayEvent.__table__  # type: ignore[attr-defined]
_GATEWAYS: Table = Gateway.__table__  # type: ignore[attr-defined]


def _touch_gateway() -> Any:
    """PostgreSQL: lock the gateway's row, note it was seen, raise ``last_event_seq`` to the top.

    Returns the site and ``last_event_seq`` as it was BEFORE (the gap check needs it): the
    ``FROM (SELECT … FOR UPDATE)`` subquery locks the row and reads its latest committed version.
    Raising the mark to the top of the whole batch equals raising it to the top of its new
    events: every stored event's seq is at most ``last_event_seq``, so a duplicate can never be
    above it. (SQLite cannot return a FROM table's columns: there, the mark is raised by a
    second statement, :data:`_RAISE_MARK`.)
    """
    g = _GATEWAYS.c
    old = (
        select(g.id, g.last_event_seq.label("before"))
        .where(g.id == bindparam("gw"))
        .with_for_update()
        .subquery("old")
    )
    top: Any = bindparam("top")
    return (
        _GATEWAYS.update()
        .where(g.id == old.c.id)
        .values(
            last_seen=bindparam("now"),
            last_event_seq=case((g.last_event_seq < top, top), else_=g.last_event_seq),
        )
        .returning(g.site_id, old.c.before)
    )


_TOUCH_GATEWAY = _touch_gateway()
_TOUCH_GATEWAY_SQLITE = (
    _GATEWAYS.update()
    .where(_GATEWAYS.c.id == bindparam("gw"))
    .values(last_seen=bindparam("now"))
    .returning(_GATEWAYS.c.site_id, _GATEWAYS.c.last_event_seq)
)
_RAISE_MARK = (
    _GATEWAYS.update()
    .where(_GATEWAYS.c.id == bindparam("gw"))
    .values(last_event_seq=bindparam("top"))
)
_CMD_ID = re.compile(r"[0-9a-f]{32}")
_LOCAL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ALARM_KIND = re.compile(r"[a-z][a-z0-9_.]{0,47}")


class UnknownGateway(Exception):
    """A batch from a gateway the cloud has no row for."""


@dataclass
class Applied:
    """What one batch's transaction did."""

    inserted: int = 0
    #: The commands whose status changed, with what was committed.
    changed_commands: dict[str, CommandState] = field(default_factory=dict)
    gaps: int = 0


class Inbox:
    """Stores batches for one database."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        insert_ = sqlite.insert if db.is_sqlite else postgresql.insert
        # executemany form: the statement compiles once (cached) and SQLAlchemy's
        # "insertmanyvalues" sends it as a few multi-row INSERTs, RETURNING the ids it inserted.
        self._insert_events_stmt = insert_(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id)
        self._touch = _TOUCH_GATEWAY_SQLITE if db.is_sqlite else _TOUCH_GATEWAY
        self._raise_mark_apart = db.is_sqlite

    async def store(self, batch: EventBatch) -> Applied:
        """Store ``batch`` and apply its new events' effects, in one transaction (committed)."""
        now = self._clock.now_ms()
        gw = batch.gateway
        applied = Applied()
        async with self._db.begin() as session:
            # First statement writes: row-locks the gateway (PostgreSQL) / takes the write lock
            # (SQLite) for the whole batch, so concurrent batches of one gateway serialise.
            row = (
                await session.execute(
                    self._touch, {"gw": gw, "now": now, "top": batch.events[-1].seq}
                )
            ).one_or_none()
            if row is None:
                raise UnknownGateway(gw)
            site_id, last_seq = row
            new_events = await self._insert_events(session, batch, site_id, now)
            applied.inserted = len(new_events)
            if new_events:
                alarms: list[dict[str, Any]] = []
                applied.changed_commands = await self._apply(
                    session, gw, site_id, new_events, alarms, now
                )
                applied.gaps = await self._sequence(
                    session, gw, site_id, last_seq, new_events, alarms, now
                )
                if alarms:
                    await session.execute(insert(_ALARMS), alarms)
        return applied

    async def _insert_events(
        self, session: AsyncConnection, batch: EventBatch, site_id: int, now: int
    ) -> list[Event]:
        rows = [
            {
                "id": e.id,
                "site_id": site_id,
                "gateway_id": batch.gateway,
                "seq": e.seq,
                "ts": e.ts,
                "type": e.type,
                "data": e.data,
                "received_at": now,
            }
            for e in batch.events
        ]
        inserted = set((await session.execute(self._insert_events_stmt, rows)).scalars())
        return [e for e in batch.events if e.id in inserted]

    async def _apply(
        self,
        session: AsyncConnection,
        gw: str,
        site_id: int,
        events: list[Event],
        alarms: list[dict[str, Any]],
        now: int,
    ) -> dict[str, CommandState]:
        # Reports per command, in order: one batch often holds "acknowledged" then "opened".
        reports: dict[str, list[Step]] = {}
        for event in events:
            data = event.data
            if event.type == "command.status":
                report = _report(event)
                if report is not None:
                    reports.setdefault(report[0], []).append(report[1])
            elif event.type == "door.online":
                door, online = data.get("door"), data.get("online")
                if _is_local_id(door) and isinstance(online, bool):
                    await session.execute(
                        update(Door)
                        .where(col(Door.gateway_id) == gw, col(Door.local_id) == door)
                        .values(online=online)
                    )
                else:
                    _bad(event)
            elif event.type == "door.event":
                kind = data.get("kind")
                if not _is_local_id(data.get("door")) or not isinstance(kind, str):
                    _bad(event)
                elif kind in ALARM_DOOR_KINDS:
                    alarms.append(_alarm(site_id, gw, kind, event, now))
            elif event.type == "gateway.alarm":
                kind = data.get("kind")
                if isinstance(kind, str) and _ALARM_KIND.fullmatch(kind):
                    # A gateway may not raise (or, by the gap logic, clear) the cloud's own kinds.
                    kind = f"gateway.{kind}" if kind in CLOUD_ALARM_KINDS else kind
                    alarms.append(_alarm(site_id, gw, kind, event, now))
                else:
                    _bad(event)
        return await self._apply_reports(session, gw, reports, now) if reports else {}

    async def _apply_reports(
        self, session: AsyncConnection, gw: str, reports: dict[str, list[Step]], now: int
    ) -> dict[str, CommandState]:
        changed: dict[str, CommandState] = {}
        for cid, steps in reports.items():
            moved = await move(
                session,
                cid,
                steps,
                now_ms=now,
                actor=f"gateway:{gw}",
                reported_by_gateway=True,
                gateway_id=gw,  # a gateway reports only on its own commands
            )
            if moved.status is None:
                log.info("report for an unknown command", command=cid, gateway=gw)
            elif moved.state is not None:
                changed[cid] = moved.state
        return changed

    async def _sequence(
        self,
        session: AsyncConnection,
        gw: str,
        site_id: int,
        last_seq: int,
        events: list[Event],
        alarms: list[dict[str, Any]],
        now: int,
    ) -> int:
        """Raise an alarm per gap above ``last_seq``; clear gap alarms that late events fill."""
        gaps = 0
        expected = last_seq + 1
        for seq in (e.seq for e in events if e.seq > last_seq):
            if seq > expected:
                gaps += 1
                alarms.append(
                    {
                        "site_id": site_id,
                        "gateway_id": gw,
                        "kind": "sequence_gap",
                        "detail": {"from": expected, "to": seq - 1, "missing": seq - expected},
                        "created_at": now,
                    }
                )
            expected = seq + 1
        top = events[-1].seq
        if top > last_seq and self._raise_mark_apart:
            await session.execute(_RAISE_MARK, {"gw": gw, "top": top})
        # (On PostgreSQL the first statement already raised last_event_seq: _TOUCH_GATEWAY.)
        if any(e.seq <= last_seq for e in events):
            await self._clear_filled_gaps(session, gw, now)
        return gaps

    async def _clear_filled_gaps(self, session: AsyncConnection, gw: str, now: int) -> None:
        # Batches may arrive out of order (two instances of a shared subscription): a gap
        # reported by one may be filled by the other moments later. Clear what is now complete.
        a = _ALARMS.c
        open_gaps = (
            await session.execute(
                select(a.id, a.detail).where(
                    a.gateway_id == gw, a.kind == "sequence_gap", a.cleared_at.is_(None)
                )
            )
        ).all()
        for alarm_id, detail in open_gaps:
            lo, hi = detail.get("from"), detail.get("to")
            if not isinstance(lo, int) or not isinstance(hi, int):
                continue
            have = (
                await session.execute(
                    select(func.count())
                    .select_from(GatewayEvent)
                    .where(
                        col(GatewayEvent.gateway_id) == gw,
                        col(GatewayEvent.seq) >= lo,
                        col(GatewayEvent.seq) <= hi,
                    )
                )
            ).scalar_one()
            if have == hi - lo + 1:
                await session.execute(
                    _ALARMS.update().where(a.id == alarm_id).values(cleared_at=now)
                )


def _report(event: Event) -> tuple[str, Step] | None:
    """(command id, (status, reason)) of a ``command.status`` event, or None if malformed."""
    data = event.data
    cid, raw_status, reason = data.get("command"), data.get("status"), data.get("reason")
    to = _REPORTS.get(raw_status) if isinstance(raw_status, str) else None
    if (
        not isinstance(cid, str)
        or not _CMD_ID.fullmatch(cid)
        or to is None
        or (reason is not None and not isinstance(reason, str))
    ):
        _bad(event)
        return None
    return cid, (to, reason)


def _is_local_id(value: object) -> bool:
    return isinstance(value, str) and _LOCAL_ID.fullmatch(value) is not None


def _bad(event: Event) -> None:
    log.warning("event data not of the expected shape", event_id=event.id, type=event.type)


def _alarm(site_id: int, gw: str, kind: str, event: Event, now: int) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "gateway_id": gw,
        "kind": kind,
        "detail": {**event.data, "event": event.id, "seq": event.seq, "ts": event.ts},
        "created_at": now,
    }
