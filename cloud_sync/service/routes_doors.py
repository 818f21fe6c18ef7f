"""Doors and door commands: list, remote unlock, and a command's status (with long poll)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, bindparam, select
from sqlmodel import col

from cloud_sync.protocol import TERMINAL, CommandStatus
from cloud_sync.service.errors import InvalidRequest, NotFound
from cloud_sync.service.policy import (
    Action,
    CommandRes,
    DoorRes,
    Obligation,
    Principal,
    Resource,
    decide,
)
from cloud_sync.service.routes import (
    HeaderParam,
    RouteTable,
    body_of,
    json_model,
    load_site,
    path_int,
    query_of,
    resource_of,
)
from cloud_sync.service.state import (
    CLOCK,
    DB,
    DECISION,
    DISPATCHER,
    PRINCIPAL,
    SETTINGS,
    UNLOCK,
    WAITERS,
)
from cloud_sync.service.tables import Building, Command, Door
from cloud_sync.service.transitions import CommandState

__all__ = ["CommandAccepted", "CommandOut", "DoorOut", "DoorsOut", "UnlockBody", "table"]

table = RouteTable()

IDEMPOTENCY_KEY = "Idempotency-Key"
_IDEMPOTENCY = re.compile(r"[\x21-\x7e]{1,128}")
#: Re-read a long-polled command this often in case another instance changed it.
RECHECK_S = 1.0

Status = CommandStatus


class DoorOut(BaseModel):
    """A door the caller may open."""

    id: int
    name: str
    building: str
    building_id: int
    online: bool | None = Field(description="null: the gateway has not reported it yet")
    reason_required: bool = Field(description="opening it requires a recorded reason")


class DoorsOut(BaseModel):
    """The doors the caller may open."""

    doors: list[DoorOut]


class UnlockBody(BaseModel):
    """Optional for residents; staff must give a reason (it goes to the audit log)."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, min_length=3, max_length=200)


class CommandAccepted(BaseModel):
    """The command was accepted; follow it at ``GET /api/v1/commands/{command_id}``."""

    command_id: str
    status: Status


class CommandOut(BaseModel):
    """Where a command (a door unlock, a meter read) is in its life."""

    command_id: str
    status: Status
    door: int | None = Field(default=None, description="the door, for a door command")
    meter: int | None = Field(default=None, description="the meter, for a meter command")
    created_at: int = Field(description="ms since the epoch")
    updated_at: int = Field(description="ms since the epoch")
    reason: str | None = Field(default=None, description="why it failed or was rejected")


class WaitQuery(BaseModel):
    """``wait``: seconds to long-poll until the status is terminal (0: answer at once)."""

    model_config = ConfigDict(extra="ignore")
    wait: float = Field(default=0, ge=0, le=25)


_DOORS: Table = Door.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_COMMANDS: Table = Command.__table__  # type: ignore[attr-defined]
# Core rows, not ORM objects: these loaders run on every unlock and every status poll.
_DOOR_ROW = select(
    *(_DOORS.c[n] for n in ("id", "site_id", "gateway_id", "building_id", "local_id", "pulse_ms"))
).where(_DOORS.c.id == bindparam("key"))
_COMMAND_ROW = select(
    *(
        _COMMANDS.c[n]
        for n in (
            "id",
            "site_id",
            "account_id",
            "door_id",
            "meter_id",
            "status",
            "reason",
            "issued_at",
            "updated_at",
        )
    )
).where(_COMMANDS.c.id == bindparam("key"))
_COMMAND_STATE = select(_COMMANDS.c.status, _COMMANDS.c.updated_at, _COMMANDS.c.reason).where(
    _COMMANDS.c.id == bindparam("key")
)


_NOTIFIED_BEFORE_LOAD: web.RequestKey[int] = web.RequestKey("notified_before_load")


async def load_door(request: web.Request, principal: Principal) -> Resource | None:
    """The door named in the path (a row with the columns an unlock needs)."""
    door_id = path_int(request, "id")
    if door_id is None:
        return None
    async with request.app[DB].autocommit() as conn:
        door = (await conn.execute(_DOOR_ROW, {"key": door_id})).one_or_none()
    return None if door is None else DoorRes(door.site_id, door.building_id, door)


async def load_command(request: web.Request, principal: Principal) -> Resource | None:
    """The command named in the path (a row)."""
    command_id = request.match_info["id"]
    # Noted before the read: a long poll can tell whether the row may have changed since.
    request[_NOTIFIED_BEFORE_LOAD] = request.app[WAITERS].notifications
    async with request.app[DB].autocommit() as conn:
        command = (await conn.execute(_COMMAND_ROW, {"key": command_id})).one_or_none()
    return None if command is None else CommandRes(command.site_id, command.account_id, command)


@table.route(
    "GET",
    "/api/v1/doors",
    action=Action.DOOR_LIST,
    load=load_site,
    summary="The doors the caller may open",
    response=DoorsOut,
)
async def list_doors(request: web.Request) -> web.Response:
    """Doors, filtered through the policy's unlock decision (the one decision point)."""
    principal = request[PRINCIPAL]
    async with request.app[DB].session() as session:
        rows = (
            await session.execute(
                select(Door, col(Building.name))
                .join(Building, col(Building.id) == col(Door.building_id))
                .where(col(Door.site_id) == principal.site_id)
                .order_by(col(Door.id))
            )
        ).all()
    doors = []
    for door, building in rows:
        decision = decide(
            principal, Action.DOOR_UNLOCK, DoorRes(door.site_id, door.building_id, door)
        )
        if decision.allowed and door.id is not None:
            doors.append(
                DoorOut(
                    id=door.id,
                    name=door.name,
                    building=building,
                    building_id=door.building_id,
                    online=door.online,
                    reason_required=decision.requires(Obligation.REASON),
                )
            )
    return json_model(DoorsOut(doors=doors))


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
    r"/api/v1/doors/{id:\d+}/unlock",
    action=Action.DOOR_UNLOCK,
    load=load_door,
    summary="Open a door: a signed, short-lived pulse command to its gateway",
    body=UnlockBody,
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
async def unlock_door(request: web.Request) -> web.Response:
    """Queue, sign and publish an unlock; 202 with the command's id and status."""
    door = resource_of(request, DoorRes).row
    body = body_of(request, UnlockBody)
    command, status, _ = await request.app[UNLOCK].unlock(
        request.app[DISPATCHER],
        request[PRINCIPAL],
        door,
        now_ms=request.app[CLOCK].now_ms(),
        reason=body.reason,
        reason_required=request[DECISION].requires(Obligation.REASON),
        idempotency_key=_idempotency_key(request),
    )
    return json_model(CommandAccepted(command_id=command.id, status=status), 202)


def _command_out(command: Any, state: CommandState) -> CommandOut:
    return CommandOut(
        command_id=command.id,
        status=state.status,
        door=command.door_id,
        meter=command.meter_id,
        created_at=command.issued_at,
        updated_at=state.updated_at,
        reason=state.reason,
    )


@table.route(
    "GET",
    "/api/v1/commands/{id:[0-9a-f]{32}}",
    action=Action.COMMAND_READ,
    load=load_command,
    summary="A command's status; ?wait=seconds long-polls until it is final",
    query=WaitQuery,
    response=CommandOut,
)
async def get_command(request: web.Request) -> web.Response:
    """The command's status, at once or when it becomes final (or the wait ends)."""
    command = resource_of(request, CommandRes).row
    state = CommandState(Status(command.status), command.updated_at, command.reason)
    wait = min(query_of(request, WaitQuery).wait, request.app[SETTINGS].max_wait_s)
    if wait > 0 and state.status not in TERMINAL:
        db = request.app[DB]

        async def read() -> CommandState:
            async with db.autocommit() as conn:
                row = (await conn.execute(_COMMAND_STATE, {"key": command.id})).one_or_none()
            if row is None:  # deleted meanwhile: commands are never deleted, but be safe
                raise NotFound()
            return CommandState(Status(row.status), row.updated_at, row.reason)

        # Ingest hands the committed status to the waiter: no read after the wake-up.
        state = await request.app[WAITERS].wait_until(
            command.id,
            read,
            lambda s: s.status in TERMINAL,
            timeout_s=wait,
            recheck_s=RECHECK_S,
            known=(state, request[_NOTIFIED_BEFORE_LOAD]),
        )
    return json_model(_command_out(command, state), exclude_none=True)
