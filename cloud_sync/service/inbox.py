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
   "released_not_opened" | "completed" | "failed" | "rejected", "reason"?}
       the command advances through the lifecycle (late reports change nothing);
   ``door.online`` {"door": local_id, "online": bool}
       ``doors.online``;
   ``door.event`` {"door", "kind", "device_seq", "boot", "command"?}
       kinds ``forced_open`` and ``held_open`` raise an alarm;
   ``gateway.alarm`` {"kind", ...}
       an alarm, its detail as sent; a ``locker_left_open``/``lockboard_offline`` alarm with
       ``cleared: true`` is stored cleared and clears the open alarms of the same kind, bank,
       compartment and board raised by earlier events;
   ``meter.reading`` {"meter": local_id, "bus", "values": {name: "decimal" | "state word"},
   "read_at": ms, "kind"?}
       a row of ``meter_readings``, once per ``(meter, read_at)`` whatever the event id; a meter
       the cloud does not know is registered (unassigned, ``kind`` from the event; without a
       valid ``kind`` the reading is not stored);
   ``device.online`` {"device", "bus", "online": bool, "kind"?}
       the device's ``online``, ``bus`` and ``changed_at`` (= the event's ``ts``), unless the
       row already holds a later change (batches may be applied out of order);
   ``device.health`` {"bus", "devices": [{"device", "kind"?, "online", "last_seen",
   "requests", "timeouts", "failures", "checksum_errors", "latency_ms"}]}
       each device's counters, ``online`` and ``last_seen`` as of the event's ``ts``
       (``stats_at``), unless the row already holds later statistics;
   ``parcel.deposited`` {"parcel", "bank", "compartment", "size", "unit", "courier"?,
   "company"?, "code_n", "deposited_at", "via"}
       the parcel becomes ``waiting`` (compartment, ``code_n``, ``deposited_at``, ``via``); a
       parcel the cloud never requested (a deposit at the terminal) is created: its bank by
       local id (registered if unknown), its unit by label in the site (None if unknown), its
       courier only if that account is a courier serving the site. Then every resident with a
       currently valid membership of the unit gets an in-app ``parcel.waiting`` note
       ``{parcel, bank, compartment}`` (never the code);
   ``parcel.opened`` {"parcel", "bank", "compartment", "for": "deposit" | "reopen"}
       the compartment opened for the courier: a parcel not yet ``waiting`` (``requested``,
       ``failed``, ``empty``) takes it, its state unchanged, unless a newer event of the gateway
       (a higher seq, ``compartment_seq``) already placed it; a parcel the cloud does not know
       (a terminal deposit) is not created by it;
   ``parcel.deposit_empty`` {"parcel", "bank", "compartment"}
       ``empty``, placed in the compartment as ``parcel.opened`` is;
   ``parcel.cancelled`` {"parcel", "bank", "reason"}
       ``cancelled`` with the reason;
   ``parcel.picked_up`` {"parcel", "bank", "compartment", "via", "at", "fee_cents", "fee_state"}
       ``picked_up`` with how, when and the fee owed;
   ``parcel.retrieved`` {"parcel", "bank", "compartment", "courier", "at"}
       ``retrieved`` (via ``courier``);
   ``locker.state`` {"bank", "compartment", "state", "reason"?}
       the compartment's state, reason and ``changed_at`` (= ``ts``) unless a later change is
       stored;
   ``gateway.started`` {"version"}, and any other type
       stored only.

   Parcel states only move up :data:`PARCEL_RANK` (requested < failed < empty < waiting <
   picked_up | retrieved | cancelled), each move a conditional UPDATE: a duplicate or late event
   never moves a parcel back, so a pickup applied before its deposit ends ``picked_up`` and never
   shows ``waiting`` (a deposit the cloud did not know of looks for its stored later outcome).
   A ``parcel.deposit`` command that ends failed, rejected or expired fails its parcel if still
   ``requested`` (:func:`fail_parcel_of_command`, also called by the expiry sweeper).

   An event whose data is not of the expected shape is stored and logged, without effect. The
   field-data effects are bulk statements: one per kind of effect and batch.
4. Sequence gaps: a new event above ``last_event_seq + 1`` raises a ``sequence_gap`` alarm naming
   the missing range; late events that complete a reported range clear its alarm (batches of one
   gateway may be handled out of order by two instances of a shared subscription).
   ``last_event_seq`` only ever moves up.

Everything runs as SQLAlchemy Core on one connection (no ORM unit of work): a batch is about six
statements (a few more when it carries readings, device health or parcel events) and one commit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import structlog
from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from cloud_sync.protocol import CommandStatus, Event, EventBatch
from cloud_sync.service.db import Connection, Database, run
from cloud_sync.service.notifications import (
    PARCEL_WAITING,
    InAppChannel,
    Note,
    Notifier,
    current_residents,
)
from cloud_sync.service.state import Clock
from cloud_sync.service.tables import (
    DEVICE_KINDS,
    METER_KINDS,
    PARCEL_SIZES,
    Account,
    Alarm,
    Command,
    Compartment,
    CourierSite,
    Device,
    Door,
    Gateway,
    GatewayEvent,
    LockerBank,
    Meter,
    MeterReading,
    Parcel,
    Unit,
)
from cloud_sync.service.transitions import CommandState, Step, move

__all__ = [
    "ALARM_DOOR_KINDS",
    "CLEARABLE_LOCKER_ALARMS",
    "CLOUD_ALARM_KINDS",
    "COMPARTMENT_STATES",
    "MAX_HEALTH_DEVICES",
    "MAX_READING_VALUES",
    "PARCEL_EVENT_TYPES",
    "PARCEL_RANK",
    "Applied",
    "Inbox",
    "UnknownGateway",
    "fail_parcel_of_command",
]

log = structlog.get_logger(__name__)

_S = CommandStatus
#: Door events that raise an alarm.
ALARM_DOOR_KINDS = frozenset({"forced_open", "held_open"})
#: Alarm kinds only the cloud raises.
CLOUD_ALARM_KINDS = frozenset({"sequence_gap", "gateway_mismatch"})
#: At most this many values in one ``meter.reading``.
MAX_READING_VALUES = 32
#: At most this many devices in one ``device.health``.
MAX_HEALTH_DEVICES = 256
_REPORTABLE = frozenset(
    {_S.ACKNOWLEDGED, _S.OPENED, _S.RELEASED_NOT_OPENED, _S.COMPLETED, _S.FAILED, _S.REJECTED}
)
_REPORTS = {s.value: s for s in _REPORTABLE}
_ALARMS: Table = Alarm.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_EVENTS: Table = GatewayEvent.__table__  # type: ignore[attr-defined]
_GATEWAYS: Table = Gateway.__table__  # type: ignore[attr-defined]
_METERS: Table = Meter.__table__  # type: ignore[attr-defined]
_READINGS: Table = MeterReading.__table__  # type: ignore[attr-defined]
_DEVICES: Table = Device.__table__  # type: ignore[attr-defined]


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
_VALUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# A reading's value: a decimal (the wire has no floats), or a short state word ("open").
_DECIMAL = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,9})?")
_STATE_WORD = re.compile(r"[a-z][a-z_]{0,15}")
_MAX_MS = (1 << 53) - 1  # beyond it a time is nonsense (and not exact in JavaScript)
_MAX_COUNT = (1 << 63) - 1
_MAX_LATENCY_MS = (1 << 31) - 1


def _device_online_upsert(insert_: Any) -> Any:
    """``device.online``: insert the device, or set its state unless a later change is stored."""
    stmt = insert_(_DEVICES)
    new, d = stmt.excluded, _DEVICES.c
    return stmt.on_conflict_do_update(
        index_elements=[d.gateway_id, d.local_id],
        set_={"online": new.online, "bus": new.bus, "changed_at": new.changed_at},
        where=d.changed_at.is_(None) | (d.changed_at <= new.changed_at),
    )


def _device_health_upsert(insert_: Any) -> Any:
    """``device.health``: insert the device, or set its statistics unless later ones are stored.

    ``online`` (when the snapshot knows it) is taken only if no later transition is stored; when
    it flips, ``changed_at`` becomes the snapshot's time. ``last_seen`` never goes back to null.
    """
    stmt = insert_(_DEVICES)
    new, d = stmt.excluded, _DEVICES.c
    take_online = new.online.is_not(None) & (
        d.changed_at.is_(None) | (d.changed_at <= new.stats_at)
    )
    return stmt.on_conflict_do_update(
        index_elements=[d.gateway_id, d.local_id],
        set_={
            "bus": new.bus,
            "online": case((take_online, new.online), else_=d.online),
            "changed_at": case(
                (take_online & d.online.is_distinct_from(new.online), new.stats_at),
                else_=d.changed_at,
            ),
            "last_seen": func.coalesce(new.last_seen, d.last_seen),
            "requests": new.requests,
            "timeouts": new.timeouts,
            "failures": new.failures,
            "checksum_errors": new.checksum_errors,
            "latency_ms": new.latency_ms,
            "stats_at": new.stats_at,
        },
        where=d.stats_at.is_(None) | (d.stats_at < new.stats_at),
    )


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

    def __init__(self, db: Database, clock: Clock, notifier: Notifier | None = None) -> None:
        """``notifier`` delivers the notes of parcel events inside the batch's transaction, so
        its channels must be transactional (the default: the in-app channel only)."""
        self._db = db
        self._clock = clock
        insert_ = sqlite.insert if db.is_sqlite else postgresql.insert
        # executemany form: the statement compiles once (cached) and SQLAlchemy's
        # "insertmanyvalues" sends it as a few multi-row INSERTs, RETURNING the ids it inserted.
        self._insert_events_stmt = insert_(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id)
        self._touch = _TOUCH_GATEWAY_SQLITE if db.is_sqlite else _TOUCH_GATEWAY
        self._field = _FieldEffects(insert_)
        self._parcels = _ParcelEffects(insert_, clock, notifier)
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
        field_data = _FieldData()
        parcel_events: list[Event] = []
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
                    alarm = _alarm(site_id, gw, kind, event, now)
                    if kind in CLEARABLE_LOCKER_ALARMS and data.get("cleared") is True:
                        await _clear_locker_alarms(session, gw, alarm, alarms, now)
                    alarms.append(alarm)
                else:
                    _bad(event)
            elif event.type in _FIELD_PARSERS:
                _FIELD_PARSERS[event.type](event, field_data)
            elif event.type in PARCEL_EVENT_TYPES:
                parcel_events.append(event)
        await self._field.apply(session, gw, site_id, field_data, now)
        if parcel_events:
            await self._parcels.apply(session, gw, site_id, parcel_events, now)
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
                await fail_parcel_of_command(
                    session, cid, moved.state.status, moved.state.reason, now
                )
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
                        "cleared_at": None,
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


# -- field data: meter readings and device health -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reading:
    event: Event
    meter: str
    kind: str | None
    read_at: int
    values: dict[str, str]


@dataclass
class _FieldData:
    """The field data of one batch's new events, gathered for one bulk statement per effect."""

    readings: list[_Reading] = field(default_factory=list)
    #: Device local id → (event time, its ``device.online`` row): the batch's latest event only.
    online: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    #: Device local id → (event time, its ``device.health`` row): the batch's latest event only.
    health: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)


def _is_ms(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= _MAX_MS


def _is_count(value: object, top: int = _MAX_COUNT) -> bool:
    return type(value) is int and 0 <= value <= top


def _device_kind(data: dict[str, Any]) -> str | None:
    """The ``kind`` of a device entry ("meter" when absent), or None when it is not a kind."""
    kind = data.get("kind", "meter")
    return kind if isinstance(kind, str) and kind in DEVICE_KINDS else None


def _values(raw: object) -> dict[str, str] | None:
    """A reading's values: 1 to 32 names, each a decimal string or a short state word."""
    if not isinstance(raw, dict) or not 0 < len(raw) <= MAX_READING_VALUES:
        return None
    for name, value in raw.items():
        if not _VALUE_NAME.fullmatch(name) or not isinstance(value, str):
            return None
        if not (_DECIMAL.fullmatch(value) or _STATE_WORD.fullmatch(value)):
            return None
    return raw


def _parse_reading(event: Event, out: _FieldData) -> None:
    data = event.data
    meter, bus, read_at, kind = (data.get(k) for k in ("meter", "bus", "read_at", "kind"))
    values = _values(data.get("values"))
    if (
        not _is_local_id(meter)
        or not _is_local_id(bus)
        or not _is_ms(read_at)
        or values is None
        or (kind is not None and kind not in METER_KINDS)
    ):
        _bad(event)
        return
    out.readings.append(_Reading(event, meter, kind, read_at, values))


def _device_row(device: str, bus: str, kind: str) -> dict[str, Any]:
    """A ``devices`` row as a report makes it (site and gateway are added when applied)."""
    return {
        "local_id": device,
        "kind": kind,
        "bus": bus,
        "online": None,
        "changed_at": None,
        "last_seen": None,
        "requests": 0,
        "timeouts": 0,
        "failures": 0,
        "checksum_errors": 0,
        "latency_ms": None,
        "stats_at": None,
    }


def _keep_latest(rows: dict[str, tuple[int, dict[str, Any]]], ts: int, row: dict[str, Any]) -> None:
    # One row per device and statement (an upsert may not touch a row twice); events are in
    # seq order, so on equal times the later event wins.
    held = rows.get(row["local_id"])
    if held is None or held[0] <= ts:
        rows[row["local_id"]] = (ts, row)


def _parse_online(event: Event, out: _FieldData) -> None:
    data = event.data
    device, bus, online = data.get("device"), data.get("bus"), data.get("online")
    kind = _device_kind(data)
    if not _is_local_id(device) or not _is_local_id(bus) or type(online) is not bool or not kind:
        _bad(event)
        return
    row = _device_row(device, bus, kind)
    row.update(online=online, changed_at=event.ts)
    _keep_latest(out.online, event.ts, row)


_COUNTERS = ("requests", "timeouts", "failures", "checksum_errors")


def _health_row(entry: object, bus: str, ts: int) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    device, kind = entry.get("device"), _device_kind(entry)
    online, last_seen, latency = (
        entry.get("online"),
        entry.get("last_seen"),
        entry.get("latency_ms"),
    )
    if (
        not _is_local_id(device)
        or kind is None
        or not (online is None or type(online) is bool)
        or not (last_seen is None or _is_ms(last_seen))
        or not (latency is None or _is_count(latency, _MAX_LATENCY_MS))
        or not all(_is_count(entry.get(name)) for name in _COUNTERS)
    ):
        return None
    row = _device_row(device, bus, kind)
    row.update({name: entry[name] for name in _COUNTERS})
    row.update(
        online=online,
        changed_at=None if online is None else ts,
        last_seen=last_seen,
        latency_ms=latency,
        stats_at=ts,
    )
    return row


def _parse_health(event: Event, out: _FieldData) -> None:
    data = event.data
    bus, devices = data.get("bus"), data.get("devices")
    if not _is_local_id(bus) or not isinstance(devices, list) or len(devices) > MAX_HEALTH_DEVICES:
        _bad(event)
        return
    rows = [_health_row(entry, bus, event.ts) for entry in devices]
    if any(row is None for row in rows) or len({r["local_id"] for r in rows if r}) < len(rows):
        _bad(event)  # a malformed entry, or a device twice: none of the snapshot is trusted
        return
    for row in rows:
        if row is not None:
            _keep_latest(out.health, event.ts, row)


_FIELD_PARSERS: dict[str, Callable[[Event, _FieldData], None]] = {
    "meter.reading": _parse_reading,
    "device.online": _parse_online,
    "device.health": _parse_health,
}


class _FieldEffects:
    """Applies a batch's field data: a few bulk statements in the batch's transaction."""

    def __init__(self, insert_: Any) -> None:
        self._register_meters = insert_(_METERS).on_conflict_do_nothing()
        self._insert_readings = insert_(_READINGS).on_conflict_do_nothing()
        self._device_online = _device_online_upsert(insert_)
        self._device_health = _device_health_upsert(insert_)

    async def apply(
        self, session: AsyncConnection, gw: str, site_id: int, data: _FieldData, now: int
    ) -> None:
        if data.readings:
            await self._readings(session, gw, site_id, data.readings, now)
        for stmt, rows in ((self._device_online, data.online), (self._device_health, data.health)):
            if rows:
                params = [{**row, "site_id": site_id, "gateway_id": gw} for _, row in rows.values()]
                await session.execute(stmt, params)

    async def _readings(
        self, session: AsyncConnection, gw: str, site_id: int, readings: list[_Reading], now: int
    ) -> None:
        known = await self._meter_ids(session, gw, {r.meter for r in readings})
        unknown: dict[str, str] = {}
        for r in readings:
            if r.meter not in known and r.kind is not None:
                unknown.setdefault(r.meter, r.kind)
        if unknown:
            # A meter the cloud was not told about: registered unassigned (staff assign it).
            await session.execute(
                self._register_meters,
                [
                    {
                        "site_id": site_id,
                        "gateway_id": gw,
                        "local_id": local_id,
                        "unit_id": None,
                        "kind": kind,
                        "name": "",
                        "created_at": now,
                    }
                    for local_id, kind in unknown.items()
                ],
            )
            known.update(await self._meter_ids(session, gw, set(unknown)))
            log.info("registered meters from their readings", gateway=gw, meters=sorted(unknown))
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        for r in readings:
            meter_id = known.get(r.meter)
            if meter_id is None:
                _bad(r.event)  # an unknown meter, and no kind to register it with
                continue
            rows.setdefault(
                (meter_id, r.read_at),
                {
                    "site_id": site_id,
                    "meter_id": meter_id,
                    "read_at": r.read_at,
                    "values": r.values,
                    "event_id": r.event.id,
                },
            )
        if rows:
            await session.execute(self._insert_readings, list(rows.values()))

    @staticmethod
    async def _meter_ids(session: AsyncConnection, gw: str, local_ids: set[str]) -> dict[str, int]:
        m = _METERS.c
        found = await session.execute(
            select(m.local_id, m.id).where(m.gateway_id == gw, m.local_id.in_(sorted(local_ids)))
        )
        return {local_id: meter_id for local_id, meter_id in found.all()}


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


def _is_local_id(value: object) -> TypeGuard[str]:
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
        "cleared_at": None,
    }


def _locker_alarm_key(detail: object) -> tuple[Any, ...] | None:
    if not isinstance(detail, dict):
        return None
    return (detail.get("bank"), detail.get("compartment"), detail.get("board"))


async def _clear_locker_alarms(
    session: AsyncConnection,
    gw: str,
    clearing: dict[str, Any],
    pending: list[dict[str, Any]],
    now: int,
) -> None:
    """A ``cleared: true`` locker alarm ends the open alarms it answers (same gateway, kind,
    bank, compartment and board, raised by an earlier event); it is stored cleared itself."""
    key, seq = _locker_alarm_key(clearing["detail"]), clearing["detail"]["seq"]
    clearing["cleared_at"] = now
    for alarm in pending:
        detail = alarm["detail"]
        if (
            alarm["kind"] == clearing["kind"]
            and alarm["cleared_at"] is None
            and _locker_alarm_key(detail) == key
            and detail.get("seq", seq) < seq
        ):
            alarm["cleared_at"] = now
    a = _ALARMS.c
    open_alarms = (
        await session.execute(
            select(a.id, a.detail).where(
                a.gateway_id == gw, a.kind == clearing["kind"], a.cleared_at.is_(None)
            )
        )
    ).all()
    ended = [
        alarm_id
        for alarm_id, detail in open_alarms
        if _locker_alarm_key(detail) == key
        and isinstance(detail.get("seq"), int)
        and detail["seq"] < seq
    ]
    if ended:
        await session.execute(_ALARMS.update().where(a.id.in_(ended)).values(cleared_at=now))


# -- parcels and lockers ------------------------------------------------------------------------

#: The parcel and locker events the inbox applies (docs/parcels.md "Events").
PARCEL_EVENT_TYPES = frozenset(
    {
        "parcel.opened",
        "parcel.deposited",
        "parcel.deposit_empty",
        "parcel.cancelled",
        "parcel.picked_up",
        "parcel.retrieved",
        "locker.state",
    }
)
#: A parcel's states in the order it can only move through: a report never moves it back, so
#: events applied out of order end where the gateway's last one left it. ``failed`` (the cloud's
#: inference from a failed deposit command) ranks below everything the gateway reports, which
#: wins if it proves the deposit happened after all.
PARCEL_RANK: dict[str, int] = {
    "requested": 0,
    "failed": 1,
    "empty": 2,
    "waiting": 3,
    "picked_up": 4,
    "retrieved": 4,
    "cancelled": 4,
}
#: The states each move may start from (all of lower rank).
_PARCEL_FROM: dict[str, tuple[str, ...]] = {
    "failed": ("requested",),
    "empty": ("requested", "failed"),
    "waiting": ("requested", "failed", "empty"),
    "cancelled": ("requested", "failed", "empty"),
    "picked_up": ("requested", "failed", "empty", "waiting"),
    "retrieved": ("requested", "failed", "empty", "waiting"),
}
#: The states in which a parcel takes the compartment a ``parcel.opened`` or
#: ``parcel.deposit_empty`` names (the deposit is under way); from ``waiting`` on, the
#: compartment is the one the gateway recorded the parcel in.
_PLACEABLE = ("requested", "failed", "empty")
#: The compartment states a gateway reports in ``locker.state``.
COMPARTMENT_STATES = frozenset({"free", "reserved", "occupied", "out_of_service"})
#: Locker alarms whose condition ends with a ``cleared: true`` alarm of the same kind.
CLEARABLE_LOCKER_ALARMS = frozenset({"locker_left_open", "lockboard_offline"})
#: Terminal parcel events looked for when a deposit arrives after them (out of order).
_PARCEL_OUTCOMES = ("parcel.picked_up", "parcel.retrieved", "parcel.cancelled")
_FAILED_COMMAND = frozenset({_S.FAILED, _S.REJECTED, _S.EXPIRED})
_DEPOSIT_ACTION = "parcel.deposit"

_PARCELS: Table = Parcel.__table__  # type: ignore[attr-defined]
_BANKS: Table = LockerBank.__table__  # type: ignore[attr-defined]
_COMPARTMENTS: Table = Compartment.__table__  # type: ignore[attr-defined]
_UNITS: Table = Unit.__table__  # type: ignore[attr-defined]
_ACCOUNTS: Table = Account.__table__  # type: ignore[attr-defined]
_COURIER_SITES: Table = CourierSite.__table__  # type: ignore[attr-defined]
_COMMANDS: Table = Command.__table__  # type: ignore[attr-defined]

_PARCEL_ID = re.compile(r"[0-9a-f]{32}")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_COMPARTMENT = 255
_MAX_CODE_N = 999
_MAX_ACCOUNT_ID = (1 << 53) - 1
_MAX_FEE_CENTS = (1 << 31) - 1
_DEPOSIT_VIA = frozenset({"command", "terminal"})
_PICKUP_VIA = frozenset({"code", "qr", "remote"})
_OPEN_FOR = frozenset({"deposit", "reopen"})


def _is_parcel_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _PARCEL_ID.fullmatch(value) is not None


def _is_one_of(value: object, allowed: frozenset[str]) -> TypeGuard[str]:
    # A string first: a list or an object in the data is unhashable (``in`` would raise).
    return isinstance(value, str) and value in allowed


def _is_no(value: object) -> TypeGuard[int]:
    return type(value) is int and 1 <= value <= _MAX_COMPARTMENT


def _is_word(value: object, max_chars: int) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) <= max_chars and _WORD.fullmatch(value) is not None


def _is_text(value: object, max_chars: int) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable()


@dataclass(frozen=True, slots=True)
class _Deposit:
    parcel: str
    bank: str
    compartment: int
    size: str
    unit: str
    code_n: int
    deposited_at: int
    via: str
    courier: int | None
    company: str | None


def _parse_deposit(data: dict[str, Any]) -> _Deposit | None:
    parcel, bank, no, size, unit = (
        data.get(k) for k in ("parcel", "bank", "compartment", "size", "unit")
    )
    code_n, at, via = data.get("code_n"), data.get("deposited_at"), data.get("via")
    courier, company = data.get("courier"), data.get("company")
    if not (
        _is_parcel_id(parcel)
        and _is_local_id(bank)
        and _is_no(no)
        and isinstance(size, str)
        and size in PARCEL_SIZES
        and _is_text(unit, 40)
        and type(code_n) is int
        and 0 <= code_n <= _MAX_CODE_N
        and _is_ms(at)
        and _is_one_of(via, _DEPOSIT_VIA)
        and (courier is None or (type(courier) is int and 1 <= courier <= _MAX_ACCOUNT_ID))
        and (company is None or _is_text(company, 64))
    ):
        return None
    return _Deposit(parcel, bank, no, size, unit, code_n, at, str(via), courier, company)


class _ParcelEffects:
    """Applies a batch's parcel and locker events, one by one, in the batch's transaction.

    Parcel events are few (one per door opening) and their effects depend on the row as it is,
    so each is a statement or two rather than a bulk upsert. Every move is a conditional UPDATE
    from the states of lower rank (:data:`PARCEL_RANK`), so a duplicate or late event changes
    nothing it should not, and the gateway's later report always wins.
    """

    def __init__(self, insert_: Any, clock: Clock, notifier: Notifier | None) -> None:
        self._insert_parcel = (
            insert_(_PARCELS).on_conflict_do_nothing(index_elements=[_PARCELS.c.id])
        ).returning(_PARCELS.c.id)
        self._register_bank = insert_(_BANKS).on_conflict_do_nothing()
        self._notifier = notifier or Notifier([InAppChannel(clock)])

    async def apply(
        self, conn: AsyncConnection, gw: str, site_id: int, events: list[Event], now: int
    ) -> None:
        for event in events:
            handled = await self._apply_one(conn, gw, site_id, event, now)
            if not handled:
                _bad(event)

    async def _apply_one(
        self, conn: AsyncConnection, gw: str, site_id: int, event: Event, now: int
    ) -> bool:
        """Apply one event; False if its data is not of the expected shape."""
        if event.type == "parcel.deposited":
            deposit = _parse_deposit(event.data)
            if deposit is None:
                return False
            await self._deposited(conn, gw, site_id, event, deposit, now)
            return True
        if event.type == "locker.state":
            return await self._locker_state(conn, gw, event)
        if event.type == "parcel.opened":
            return await self._opened(conn, gw, event, now)
        return await self._outcome(conn, gw, event, now)

    @staticmethod
    async def _opened(conn: AsyncConnection, gw: str, event: Event, now: int) -> bool:
        """``parcel.opened``: the deposit's compartment, while its door is open."""
        data = event.data
        parcel, bank, no = data.get("parcel"), data.get("bank"), data.get("compartment")
        if (
            not _is_parcel_id(parcel)
            or not _is_local_id(bank)
            or not _is_no(no)
            or not _is_one_of(data.get("for"), _OPEN_FOR)
        ):
            return False
        if not await _place_parcel(conn, gw, parcel, no, event.seq, now):
            log.info("parcel event changed nothing", parcel=parcel, type=event.type, gateway=gw)
        return True

    async def _outcome(self, conn: AsyncConnection, gw: str, event: Event, now: int) -> bool:
        """``deposit_empty``, ``cancelled``, ``picked_up``, ``retrieved``: move the parcel on."""
        data = event.data
        parcel, bank, no = data.get("parcel"), data.get("bank"), data.get("compartment")
        if not _is_parcel_id(parcel) or not _is_local_id(bank):
            return False
        values: dict[str, Any]
        placed = False
        if event.type == "parcel.cancelled":
            reason = data.get("reason")
            if not _is_word(reason, 64):
                return False
            to, values = "cancelled", {"reason": reason}
        elif not _is_no(no):
            return False
        elif event.type == "parcel.deposit_empty":
            placed = await _place_parcel(conn, gw, parcel, no, event.seq, now)
            to, values = "empty", {}
        elif event.type == "parcel.picked_up":
            via, at = data.get("via"), data.get("at")
            fee, fee_state = data.get("fee_cents"), data.get("fee_state")
            if (
                not _is_one_of(via, _PICKUP_VIA)
                or not _is_ms(at)
                or not _is_count(fee, _MAX_FEE_CENTS)
                or not _is_word(fee_state, 8)
            ):
                return False
            to = "picked_up"
            values = {
                "compartment": no,
                "via": via,
                "picked_up_at": at,
                "fee_cents": fee,
                "fee_state": fee_state,
            }
        else:  # parcel.retrieved
            at, courier = data.get("at"), data.get("courier")
            if not _is_ms(at) or not (courier is None or _is_count(courier, _MAX_ACCOUNT_ID)):
                return False
            to, values = "retrieved", {"compartment": no, "via": "courier", "picked_up_at": at}
        moved = await _move_parcel(conn, parcel, to, now, gateway=gw, **values)
        if not moved and not placed:
            log.info("parcel event changed nothing", parcel=parcel, type=event.type, gateway=gw)
        return True

    async def _deposited(
        self,
        conn: AsyncConnection,
        gw: str,
        site_id: int,
        event: Event,
        d: _Deposit,
        now: int,
    ) -> None:
        bank_id, bank_name = await self._bank(conn, gw, site_id, d.bank, now)
        p = _PARCELS.c
        row = (
            await conn.execute(select(p.gateway_id, p.unit_id).where(p.id == d.parcel))
        ).one_or_none()
        if row is not None and row.gateway_id != gw:
            log.warning("deposit of another gateway's parcel", parcel=d.parcel, gateway=gw)
            return
        if row is None:
            # A deposit the cloud never asked for: the courier used the locker's terminal.
            unit_id = await self._unit_id(conn, site_id, d.unit)
            inserted = await conn.execute(
                self._insert_parcel,
                {
                    "id": d.parcel,
                    "site_id": site_id,
                    "gateway_id": gw,
                    "bank_id": bank_id,
                    "compartment": d.compartment,
                    "size": d.size,
                    "unit_id": unit_id,
                    "unit_label": d.unit,
                    "courier_account_id": await self._courier(conn, site_id, d.courier),
                    "company": d.company,
                    "tracking": None,
                    "state": "waiting",
                    "reason": None,
                    "code_n": d.code_n,
                    "via": d.via,
                    "fee_cents": None,
                    "fee_state": None,
                    "created_at": now,
                    "deposited_at": d.deposited_at,
                    "picked_up_at": None,
                    "updated_at": now,
                },
            )
            if inserted.first() is None:
                return
            # Its pickup (or cancel) may have been stored before it, out of order: apply it now.
            if not await self._still_waiting(conn, gw, event.seq, d.parcel, now):
                return
        else:
            unit_id = row.unit_id
            moved = await _move_parcel(
                conn,
                d.parcel,
                "waiting",
                now,
                gateway=gw,
                compartment=d.compartment,
                code_n=d.code_n,
                deposited_at=d.deposited_at,
                via=d.via,
                reason=None,
            )
            if not moved:
                # Already picked up, retrieved (or waiting: a duplicate): only fill in when it
                # was deposited; never move it back.
                await conn.execute(
                    _PARCELS.update()
                    .where(p.id == d.parcel, p.gateway_id == gw, p.deposited_at.is_(None))
                    .values(
                        deposited_at=d.deposited_at,
                        compartment=func.coalesce(p.compartment, d.compartment),
                    )
                )
                return
        if unit_id is None:
            log.info("parcel for a unit the cloud does not know", parcel=d.parcel, gateway=gw)
            return
        body: dict[str, str | int | None] = {
            "parcel": d.parcel,
            "bank": bank_name,
            "compartment": d.compartment,
        }
        for resident_id in await current_residents(conn, unit_id, now):
            await self._notifier.notify(conn, Note(site_id, resident_id, PARCEL_WAITING, body))

    async def _still_waiting(
        self, conn: AsyncConnection, gw: str, seq: int, parcel: str, now: int
    ) -> bool:
        """Apply the stored outcomes of ``parcel`` the gateway sent after ``seq``; still waiting?"""
        e = _EVENTS.c
        rows = (
            await conn.execute(
                select(e.id, e.seq, e.ts, e.type, e.data)
                .where(
                    e.gateway_id == gw,
                    e.seq > seq,
                    e.type.in_(_PARCEL_OUTCOMES),
                    e.data["parcel"].as_string() == parcel,
                )
                .order_by(e.seq)
            )
        ).all()
        if not rows:
            return True
        for row in rows:
            await self._outcome(conn, gw, Event(row.id, row.seq, row.ts, row.type, row.data), now)
        state = await conn.execute(select(_PARCELS.c.state).where(_PARCELS.c.id == parcel))
        return bool(state.scalar_one() == "waiting")

    async def _bank(
        self, conn: AsyncConnection, gw: str, site_id: int, local_id: str, now: int
    ) -> tuple[int, str]:
        """The bank's id and display name; a bank the cloud was not told about is registered."""
        b = _BANKS.c
        query = select(b.id, b.name).where(b.gateway_id == gw, b.local_id == local_id)
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            await conn.execute(
                self._register_bank,
                {
                    "site_id": site_id,
                    "gateway_id": gw,
                    "local_id": local_id,
                    "name": "",
                    "building_id": None,
                },
            )
            log.info("registered a locker bank from a deposit", gateway=gw, bank=local_id)
            row = (await conn.execute(query)).one()
        return int(row.id), row.name or local_id

    @staticmethod
    async def _unit_id(conn: AsyncConnection, site_id: int, label: str) -> int | None:
        u = _UNITS.c
        found = await conn.execute(select(u.id).where(u.site_id == site_id, u.label == label))
        return found.scalar_one_or_none()

    @staticmethod
    async def _courier(conn: AsyncConnection, site_id: int, account_id: int | None) -> int | None:
        """``account_id`` if it is a courier's account serving the site, else None."""
        if account_id is None:
            return None
        a, cs = _ACCOUNTS.c, _COURIER_SITES.c
        found = await conn.execute(
            select(a.id)
            .join(_COURIER_SITES, cs.account_id == a.id)
            .where(a.id == account_id, a.role == "courier", cs.site_id == site_id)
        )
        return found.scalar_one_or_none()

    @staticmethod
    async def _locker_state(conn: AsyncConnection, gw: str, event: Event) -> bool:
        data = event.data
        bank, no, state, reason = (data.get(k) for k in ("bank", "compartment", "state", "reason"))
        if (
            not _is_local_id(bank)
            or not _is_no(no)
            or not _is_one_of(state, COMPARTMENT_STATES)
            or not (reason is None or _is_word(reason, 64))
        ):
            return False
        b, c = _BANKS.c, _COMPARTMENTS.c
        bank_id = select(b.id).where(b.gateway_id == gw, b.local_id == bank).scalar_subquery()
        changed = await conn.execute(
            _COMPARTMENTS.update()
            .where(
                c.bank_id == bank_id,
                c.no == no,
                c.changed_at.is_(None) | (c.changed_at <= event.ts),
            )
            .values(state=state, reason=reason, changed_at=event.ts)
            .returning(c.id)
        )
        if changed.first() is None:
            log.info("locker.state changed nothing", gateway=gw, bank=bank, compartment=no)
        return True


async def _move_parcel(
    conn: Connection, parcel: str, to: str, now: int, *, gateway: str | None = None, **values: Any
) -> bool:
    """Move ``parcel`` to ``to`` if it is in a state of lower rank; whether it moved."""
    p = _PARCELS.c
    stmt = _PARCELS.update().where(p.id == parcel, p.state.in_(_PARCEL_FROM[to]))
    if gateway is not None:
        stmt = stmt.where(p.gateway_id == gateway)
    result = await run(conn, stmt.values(state=to, updated_at=now, **values).returning(p.id))
    return result.first() is not None


async def _place_parcel(
    conn: AsyncConnection, gw: str, parcel: str, no: int, seq: int, now: int
) -> bool:
    """Set the compartment of ``parcel`` (of gateway ``gw``) while its deposit is under way,
    unless an event with a higher ``seq`` set it already; the state is left as it is."""
    p = _PARCELS.c
    result = await conn.execute(
        _PARCELS.update()
        .where(
            p.id == parcel,
            p.gateway_id == gw,
            p.state.in_(_PLACEABLE),
            p.compartment_seq.is_(None) | (p.compartment_seq < seq),
        )
        .values(compartment=no, compartment_seq=seq, updated_at=now)
        .returning(p.id)
    )
    return result.first() is not None


async def fail_parcel_of_command(
    conn: Connection, command_id: str, status: CommandStatus, reason: str | None, now_ms: int
) -> bool:
    """A ``parcel.deposit`` command ended failed/rejected/expired: its parcel, if still
    ``requested``, becomes ``failed`` with the command's reason (or its status). Whether it did.

    Call it in the transaction that moved the command. A gateway event that later proves the
    deposit happened after all still moves the parcel on (``failed`` ranks below them all).
    """
    if status not in _FAILED_COMMAND:
        return False
    c = _COMMANDS.c
    parcel = (
        await run(
            conn,
            select(c.parcel_id).where(
                c.id == command_id, c.action == _DEPOSIT_ACTION, c.parcel_id.is_not(None)
            ),
        )
    ).scalar_one_or_none()
    if parcel is None:
        return False
    why = (reason or status.value)[:64]
    return await _move_parcel(conn, parcel, "failed", now_ms, reason=why)
