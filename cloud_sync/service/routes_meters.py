"""Meters and field devices: the meters a caller may read, their series, on-demand reads, health.

Who sees which meter is decided by the policy alone (:func:`~cloud_sync.service.policy.decide` on
``meter.readings``): a resident sees the meters of the units where her membership is valid now,
engineers and admins every meter of their site. The list filters through that same decision.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.orm import aliased

from cloud_sync.protocol.wire import ID_PATTERN
from cloud_sync.service.errors import InvalidRequest
from cloud_sync.service.meter_read import MeterReadService
from cloud_sync.service.policy import Action, MeterRes, Principal, Resource, decide
from cloud_sync.service.routes import (
    HeaderParam,
    RouteTable,
    json_model,
    load_site,
    path_int,
    query_of,
    resource_of,
)
from cloud_sync.service.routes_doors import IDEMPOTENCY_KEY, CommandAccepted
from cloud_sync.service.state import CLOCK, DB, DISPATCHER, PRINCIPAL, SETTINGS
from cloud_sync.service.tables import Device, Meter, MeterReading, Unit

__all__ = [
    "DeviceOut",
    "DevicesOut",
    "MeterOut",
    "MetersOut",
    "ReadingOut",
    "ReadingsOut",
    "load_meter",
    "table",
]

table = RouteTable()

_MAX_ID = (1 << 31) - 1
_MAX_MS = (1 << 53) - 1
_IDEMPOTENCY = re.compile(r"[\x21-\x7e]{1,128}")

_METERS: Table = Meter.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_READINGS: Table = MeterReading.__table__  # type: ignore[attr-defined]
_DEVICES: Table = Device.__table__  # type: ignore[attr-defined]
_UNITS: Table = Unit.__table__  # type: ignore[attr-defined]

# Core rows, not ORM objects: the loader runs on every series request and every read.
_METER_ROW = select(
    *(_METERS.c[n] for n in ("id", "site_id", "gateway_id", "local_id", "unit_id"))
).where(_METERS.c.id == bindparam("key"))


def _latest_readings() -> Any:
    """Each given meter's newest reading: one query, each max an index lookup on the series key."""
    r, newest = _READINGS, aliased(_READINGS)
    top = (
        select(func.max(newest.c.read_at))
        .where(newest.c.meter_id == r.c.meter_id)
        .scalar_subquery()
    )
    return select(r.c.meter_id, r.c.read_at, r.c["values"]).where(
        r.c.meter_id.in_(bindparam("ids", expanding=True)), r.c.read_at == top
    )


_LATEST = _latest_readings()


class ReadingOut(BaseModel):
    """One reading of a meter."""

    read_at: int = Field(description="when the gateway read the meter, ms since the epoch")
    values: dict[str, str] = Field(
        description='quantity → value: a decimal string ("1234.56", e.g. `energy_kwh`, '
        '`volume_m3`) or a state word (`valve`: "open", "closed", "fault")'
    )


class MeterOut(BaseModel):
    """A meter the caller may read, with its newest reading."""

    id: int = Field(description="names the meter in `/api/v1/meters/{id}/…`")
    name: str = Field(description="may be empty: a meter is usually known by its unit")
    kind: str = Field(description="electricity, water, gas or heat")
    unit: str | None = Field(description="the unit's label (`1-101`); null: not assigned")
    gateway: str = Field(description="the gateway that reads it")
    latest: ReadingOut | None = Field(description="the newest reading; null: none yet")


class MetersOut(BaseModel):
    """The meters the caller may read, by id."""

    meters: list[MeterOut]
    next_after: int | None = Field(
        default=None, description="more meters follow: pass as `after` for the next page"
    )


class MetersQuery(BaseModel):
    """Paging: meters with an id above ``after``, at most ``limit``."""

    model_config = ConfigDict(extra="ignore")
    after: int = Field(default=0, ge=0, le=_MAX_ID, description="a meter id (exclusive)")
    limit: int = Field(default=500, ge=1, le=1000)


class ReadingsOut(BaseModel):
    """A meter's readings, newest first."""

    meter: int = Field(description="the meter's id")
    readings: list[ReadingOut]
    next_before: int | None = Field(
        default=None, description="older readings follow: pass as `before` for the next page"
    )


class ReadingsQuery(BaseModel):
    """The window ``since <= read_at < until``, newest first; ``before`` pages back from there."""

    model_config = ConfigDict(extra="ignore")
    since: int | None = Field(default=None, ge=0, le=_MAX_MS, description="ms, inclusive")
    until: int | None = Field(default=None, ge=0, le=_MAX_MS, description="ms, exclusive")
    before: int | None = Field(
        default=None, ge=0, le=_MAX_MS, description="ms, exclusive: `next_before` of a page"
    )
    limit: int = Field(default=100, ge=1, le=1000)


class DeviceOut(BaseModel):
    """A field device (meter, lock board…) as its gateway last reported it."""

    gateway: str = Field(description="the gateway that reports it")
    id: str = Field(description="the device's id in the gateway's configuration")
    kind: str = Field(description="meter, lockboard, door or terminal")
    bus: str | None = Field(description="the RS-485 bus it hangs on")
    online: bool | None = Field(description="null: not reported yet")
    changed_at: int | None = Field(description="when `online` last changed (gateway time, ms)")
    last_seen: int | None = Field(description="its last answer (gateway time, ms)")
    requests: int = Field(description="requests sent to it since the gateway started")
    timeouts: int = Field(description="requests it did not answer")
    failures: int = Field(description="exchanges that failed after every retry")
    checksum_errors: int = Field(description="replies with a bad CRC or checksum")
    latency_ms: int | None = Field(description="smoothed reply latency")
    stats_at: int | None = Field(
        description="gateway time of the counters (null: only online/offline reported so far)"
    )


class DevicesOut(BaseModel):
    """The site's field devices, in the order the cloud first heard of them."""

    devices: list[DeviceOut]
    next_after: int | None = Field(
        default=None, description="more devices follow: pass as `after` for the next page"
    )


class DevicesQuery(BaseModel):
    """Filters: ``online`` state, one ``gateway``; paging: ``after`` a cursor, ``limit``."""

    model_config = ConfigDict(extra="ignore")
    online: bool | None = None
    gateway: str | None = Field(default=None, pattern=f"^{ID_PATTERN.pattern}$")
    after: int = Field(default=0, ge=0, le=_MAX_ID, description="`next_after` of a page")
    limit: int = Field(default=500, ge=1, le=1000)


async def load_meter(request: web.Request, principal: Principal) -> Resource | None:
    """The meter named in the path (a row with the columns a read needs)."""
    meter_id = path_int(request, "id")
    if meter_id is None:
        return None
    async with request.app[DB].autocommit() as conn:
        meter = (await conn.execute(_METER_ROW, {"key": meter_id})).one_or_none()
    return None if meter is None else MeterRes(meter.site_id, meter.unit_id, meter)


@table.route(
    "GET",
    "/api/v1/meters",
    action=Action.METER_LIST,
    load=load_site,
    summary="The meters the caller may read, each with its newest reading",
    query=MetersQuery,
    response=MetersOut,
)
async def list_meters(request: web.Request) -> web.Response:
    """Meters, filtered through the policy's ``meter.readings`` decision (the decision point)."""
    principal = request[PRINCIPAL]
    q = query_of(request, MetersQuery)
    m, u = _METERS.c, _UNITS.c
    async with request.app[DB].session() as session:
        rows = (
            await session.execute(
                select(m.id, m.site_id, m.unit_id, m.gateway_id, m.kind, m.name, u.label)
                .select_from(_METERS.outerjoin(_UNITS, u.id == m.unit_id))
                .where(m.site_id == principal.site_id, m.id > q.after)
                .order_by(m.id)
            )
        ).all()
        allowed = []
        for row in rows:
            res = MeterRes(row.site_id, row.unit_id, row)
            if decide(principal, Action.METER_READINGS, res).allowed:
                allowed.append(row)
                if len(allowed) > q.limit:
                    break
        page, more = allowed[: q.limit], len(allowed) > q.limit
        latest: dict[int, ReadingOut] = {}
        if page:
            found = await session.execute(_LATEST, {"ids": [row.id for row in page]})
            for meter_id, read_at, values in found.all():
                latest[meter_id] = ReadingOut(read_at=read_at, values=values)
    meters = [
        MeterOut(
            id=row.id,
            name=row.name,
            kind=row.kind,
            unit=row.label,
            gateway=row.gateway_id,
            latest=latest.get(row.id),
        )
        for row in page
    ]
    return json_model(MetersOut(meters=meters, next_after=page[-1].id if more else None))


@table.route(
    "GET",
    r"/api/v1/meters/{id:\d+}/readings",
    action=Action.METER_READINGS,
    load=load_meter,
    summary="A meter's readings, newest first (?since, until, before, limit)",
    query=ReadingsQuery,
    response=ReadingsOut,
)
async def meter_readings(request: web.Request) -> web.Response:
    """A page of the meter's series; ``next_before`` names the next page when there is one."""
    meter = resource_of(request, MeterRes).row
    q = query_of(request, ReadingsQuery)
    r = _READINGS.c
    stmt = select(r.read_at, r["values"]).where(r.meter_id == meter.id)
    if q.since is not None:
        stmt = stmt.where(r.read_at >= q.since)
    for bound in (q.until, q.before):
        if bound is not None:
            stmt = stmt.where(r.read_at < bound)
    async with request.app[DB].autocommit() as conn:
        rows = (await conn.execute(stmt.order_by(r.read_at.desc()).limit(q.limit + 1))).all()
    page = [ReadingOut(read_at=read_at, values=values) for read_at, values in rows[: q.limit]]
    more = len(rows) > q.limit
    return json_model(
        ReadingsOut(meter=meter.id, readings=page, next_before=page[-1].read_at if more else None)
    )


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not _IDEMPOTENCY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-128 visible ASCII characters", code="invalid_header"
        )
    return key


@table.route(
    "POST",
    r"/api/v1/meters/{id:\d+}/read",
    action=Action.METER_READ_NOW,
    load=load_meter,
    summary="Read a meter now: a signed, short-lived meter.read command to its gateway",
    response=CommandAccepted,
    status=202,
    headers=(
        HeaderParam(
            IDEMPOTENCY_KEY,
            "Retrying with the same key returns the same command instead of a new one.",
            128,
        ),
    ),
    errors=(409,),
)
async def read_meter(request: web.Request) -> web.Response:
    """Queue, sign and publish a ``meter.read``; 202 with the command's id and status.

    The reading arrives as an ordinary ``meter.reading`` event; the command becomes
    ``completed`` when the gateway reports the read done.
    """
    meter = resource_of(request, MeterRes).row
    app = request.app
    service = MeterReadService(app[DB], app[SETTINGS].command_ttl_ms)
    command, status, _ = await service.read_now(
        app[DISPATCHER],
        request[PRINCIPAL],
        meter,
        now_ms=app[CLOCK].now_ms(),
        idempotency_key=_idempotency_key(request),
    )
    return json_model(CommandAccepted(command_id=command.id, status=status), 202)


@table.route(
    "GET",
    "/api/v1/devices",
    action=Action.DEVICE_LIST,
    load=load_site,
    summary="The site's field devices: online, last seen, bus statistics",
    query=DevicesQuery,
    response=DevicesOut,
)
async def list_devices(request: web.Request) -> web.Response:
    """Devices of the caller's site, optionally only online/offline ones or one gateway's."""
    q = query_of(request, DevicesQuery)
    d = _DEVICES.c
    stmt = select(_DEVICES).where(d.site_id == request[PRINCIPAL].site_id, d.id > q.after)
    if q.online is not None:
        stmt = stmt.where(d.online.is_(q.online))
    if q.gateway is not None:
        stmt = stmt.where(d.gateway_id == q.gateway)
    async with request.app[DB].autocommit() as conn:
        rows = (await conn.execute(stmt.order_by(d.id).limit(q.limit + 1))).all()
    page = rows[: q.limit]
    devices = [
        DeviceOut(
            gateway=row.gateway_id,
            id=row.local_id,
            kind=row.kind,
            bus=row.bus,
            online=row.online,
            changed_at=row.changed_at,
            last_seen=row.last_seen,
            requests=row.requests,
            timeouts=row.timeouts,
            failures=row.failures,
            checksum_errors=row.checksum_errors,
            latency_ms=row.latency_ms,
            stats_at=row.stats_at,
        )
        for row in page
    ]
    more = len(rows) > q.limit
    return json_model(DevicesOut(devices=devices, next_after=page[-1].id if more else None))
