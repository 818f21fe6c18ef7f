"""Residents' records, for admins: masked by default, unmasked only with an audited reason."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import col

from cloud_sync.service import audit, directory
from cloud_sync.service.policy import Action, Principal, ResidentRes, Resource
from cloud_sync.service.routes import RouteTable, body_of, json_model, path_int, resource_of
from cloud_sync.service.state import CLOCK, DB, KEYS, PRINCIPAL
from cloud_sync.service.tables import Membership, Resident, Unit

__all__ = ["ResidentOut", "UnmaskBody", "UnmaskedOut", "table"]

table = RouteTable()


class ResidentOut(BaseModel):
    """A resident, personal data masked (``李**``, ``138****8000``)."""

    id: int
    name: str | None
    phone: str | None
    units: list[str]
    erased: bool


class UnmaskBody(BaseModel):
    """Why the full data is needed; written to the audit log."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=200)


class UnmaskedOut(BaseModel):
    """A resident's full name and phone number. This read is audited."""

    id: int
    name: str | None
    phone: str | None


async def load_resident(request: web.Request, principal: Principal) -> Resource | None:
    """The resident named in the path."""
    resident_id = path_int(request, "id")
    if resident_id is None:
        return None
    async with request.app[DB].session() as session:
        resident = await session.get(Resident, resident_id)
    return None if resident is None else ResidentRes(resident.site_id, resident_id)


@table.route(
    "GET",
    r"/api/v1/residents/{id:\d+}",
    action=Action.RESIDENT_READ,
    load=load_resident,
    summary="A resident's record, personal data masked",
    response=ResidentOut,
)
async def get_resident(request: web.Request) -> web.Response:
    """The masked record."""
    res = resource_of(request, ResidentRes)
    now = request[PRINCIPAL].at_ms
    async with request.app[DB].session() as session:
        profile = await directory.read_profile(session, request.app[KEYS], res.resident_id)
        resident = await session.get(Resident, res.resident_id)
        labels = (
            await session.execute(
                select(col(Unit.label), col(Membership.valid_from), col(Membership.valid_until))
                .join(Membership, col(Membership.unit_id) == col(Unit.id))
                .where(col(Membership.resident_id) == res.resident_id)
                .order_by(col(Unit.label))
            )
        ).all()
    units = [
        label
        for label, valid_from, valid_until in labels
        if valid_from <= now and (valid_until is None or now < valid_until)
    ]
    out = ResidentOut(
        id=res.resident_id,
        name=directory.mask_name(profile.name) if profile else None,
        phone=directory.mask_phone(profile.phone) if profile else None,
        units=units,
        erased=resident is None or resident.erased_at is not None,
    )
    return json_model(out)


@table.route(
    "POST",
    r"/api/v1/residents/{id:\d+}/unmask",
    action=Action.RESIDENT_UNMASK,
    load=load_resident,
    summary="A resident's full name and phone; requires a reason, and is audited",
    body=UnmaskBody,
    response=UnmaskedOut,
)
async def unmask_resident(request: web.Request) -> web.Response:
    """Open the resident's data after recording who asked and why."""
    res = resource_of(request, ResidentRes)
    principal = request[PRINCIPAL]
    body = body_of(request, UnmaskBody)
    keys = request.app[KEYS]
    async with request.app[DB].session() as session:
        # The audit record commits before any data is returned: no unaudited disclosure.
        resident_key = await directory.resident_key(session, keys, res.resident_id)
        await audit.append(
            session,
            site_id=res.site_id,
            actor=principal.actor,
            action="resident.unmask",
            obj=f"resident:{res.resident_id}",
            detail={"reason": body.reason, "fields": ["name", "phone"]},
            # Sealed under the resident's own key: erasing them shreds the reason too.
            seal_for=resident_key or keys.audit_key,
            ts=request.app[CLOCK].now_ms(),
        )
        await session.commit()
        profile = await directory.read_profile(session, keys, res.resident_id)
    out = UnmaskedOut(
        id=res.resident_id,
        name=profile.name if profile else None,
        phone=profile.phone if profile else None,
    )
    return json_model(out)
