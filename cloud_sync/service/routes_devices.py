"""What engineers watch: gateways and alarms of their site."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import col

from cloud_sync.service.policy import Action
from cloud_sync.service.routes import RouteTable, json_model, load_site, query_of
from cloud_sync.service.state import DB, PRINCIPAL
from cloud_sync.service.tables import Alarm, Gateway

__all__ = ["AlarmOut", "AlarmsOut", "GatewayOut", "GatewaysOut", "table"]

table = RouteTable()


class GatewayOut(BaseModel):
    """A gateway's link state and sync counters."""

    id: str
    name: str
    online: bool
    last_seen: int | None = Field(description="ms since the epoch; null: never heard from")
    last_event_seq: int
    command_seq: int


class GatewaysOut(BaseModel):
    """The site's gateways."""

    gateways: list[GatewayOut]


class AlarmOut(BaseModel):
    """Something to look at: a sequence gap, a forced or held door, a gateway's own alarm."""

    id: int
    kind: str
    gateway: str | None
    detail: dict[str, Any]
    created_at: int
    cleared_at: int | None


class AlarmsOut(BaseModel):
    """Alarms, newest first."""

    alarms: list[AlarmOut]


class AlarmQuery(BaseModel):
    """Filters: only uncleared alarms; at most ``limit``; older than ``before`` (an alarm id)."""

    model_config = ConfigDict(extra="ignore")
    open: bool = False
    limit: int = Field(default=100, ge=1, le=500)
    before: int | None = Field(default=None, ge=1, le=(1 << 63) - 1)


@table.route(
    "GET",
    "/api/v1/gateways",
    action=Action.GATEWAY_LIST,
    load=load_site,
    summary="The site's gateways: online, last seen, sync counters",
    response=GatewaysOut,
)
async def list_gateways(request: web.Request) -> web.Response:
    """Gateways of the caller's site."""
    site_id = request[PRINCIPAL].site_id
    async with request.app[DB].session() as session:
        rows = (
            await session.execute(
                select(Gateway).where(col(Gateway.site_id) == site_id).order_by(col(Gateway.id))
            )
        ).scalars()
        out = [
            GatewayOut(
                id=g.id,
                name=g.name,
                online=g.online,
                last_seen=g.last_seen,
                last_event_seq=g.last_event_seq,
                command_seq=g.command_seq,
            )
            for g in rows
        ]
    return json_model(GatewaysOut(gateways=out))


@table.route(
    "GET",
    "/api/v1/alarms",
    action=Action.ALARM_LIST,
    load=load_site,
    summary="The site's alarms, newest first",
    query=AlarmQuery,
    response=AlarmsOut,
)
async def list_alarms(request: web.Request) -> web.Response:
    """Alarms of the caller's site."""
    q = query_of(request, AlarmQuery)
    stmt = select(Alarm).where(col(Alarm.site_id) == request[PRINCIPAL].site_id)
    if q.open:
        stmt = stmt.where(col(Alarm.cleared_at).is_(None))
    if q.before is not None:
        stmt = stmt.where(col(Alarm.id) < q.before)
    async with request.app[DB].session() as session:
        rows = (await session.execute(stmt.order_by(col(Alarm.id).desc()).limit(q.limit))).scalars()
        out = [
            AlarmOut(
                id=a.id or 0,
                kind=a.kind,
                gateway=a.gateway_id,
                detail=a.detail,
                created_at=a.created_at,
                cleared_at=a.cleared_at,
            )
            for a in rows
        ]
    return json_model(AlarmsOut(alarms=out))
