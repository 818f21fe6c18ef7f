"""Parcel lockers over the API: banks, recipients, deposits, the courier's and resident's actions.

Who may do what is the policy's alone (:mod:`cloud_sync.service.policy`): a courier acts at the
sites it serves and on the parcels it deposited; a parcel's pickup code, QR and remote open are
its unit's residents' only; engineers and admins of the site see banks and parcels. Lists filter
through the per-item decision (``parcel.read``, ``bank.list``).

No response ever carries a resident's name or full phone number, and only ``/code`` and
``/qr.png`` — to the recipient — carry a pickup code or token. The services behind the commands
are in :mod:`cloud_sync.service.parcel_desk`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, Final, Literal, get_args

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Table, and_, bindparam, or_, select

from cloud_sync.protocol.tokens import (
    COURIER_MAX_LIFETIME_MS,
    PICKUP_MAX_LIFETIME_MS,
    CourierPass,
    sign_token,
)
from cloud_sync.protocol.wire import ID_PATTERN
from cloud_sync.service import audit, directory
from cloud_sync.service.errors import Conflict, InvalidRequest, NotFound
from cloud_sync.service.parcel_codes import (
    DEFAULT_PICKUP_TOKEN_LIFETIME_MS,
    pickup_code,
    pickup_token,
)
from cloud_sync.service.parcel_desk import (
    CANCEL,
    PICKUP,
    REOPEN,
    RETRIEVE,
    Issued,
    ParcelDesk,
    estimated_fee,
    find_recipient,
)
from cloud_sync.service.policy import (
    Action,
    BankRes,
    GatewayRes,
    ParcelRes,
    Principal,
    Resource,
    Role,
    decide,
)
from cloud_sync.service.qr_image import render_qr_png
from cloud_sync.service.routes import (
    HeaderParam,
    RouteTable,
    body_of,
    json_model,
    load_site,
    query_of,
    resource_of,
)
from cloud_sync.service.routes_doors import IDEMPOTENCY_KEY, CommandAccepted
from cloud_sync.service.state import (
    CLOCK,
    DB,
    DISPATCHER,
    KEYS,
    PARCEL_LIMITS,
    PRINCIPAL,
    SETTINGS,
)
from cloud_sync.service.tables import PARCEL_SIZES, PARCEL_STATES, Compartment, LockerBank, Parcel
from cloud_sync.service.tables import Gateway as GatewayRow

__all__ = [
    "BankOut",
    "BanksOut",
    "CodeOut",
    "CourierPassOut",
    "DepositBody",
    "DepositOut",
    "ParcelCommandOut",
    "ParcelOut",
    "ParcelsOut",
    "PickupOut",
    "RecipientBody",
    "RecipientOut",
    "load_parcel",
    "table",
]

table = RouteTable()

#: How long a courier pass is valid (the token format allows at most 24 h).
COURIER_PASS_LIFETIME_MS: Final = 12 * 3600 * 1000
#: How long a pickup QR token is valid (at most 14 days; single-use by the parcel's state).
PICKUP_TOKEN_LIFETIME_MS: Final = DEFAULT_PICKUP_TOKEN_LIFETIME_MS
_MAX_ID = (1 << 31) - 1
_IDEMPOTENCY = re.compile(r"[\x21-\x7e]{1,128}")
_CURSOR = re.compile(r"(\d{1,16})\.([0-9a-f]{32})")
_NO_STORE = {"Cache-Control": "no-store"}

Size = Literal["mini", "S", "M", "L"]
State = Literal["requested", "empty", "waiting", "picked_up", "retrieved", "cancelled", "failed"]
if set(get_args(Size)) != set(PARCEL_SIZES) or set(get_args(State)) != set(PARCEL_STATES):
    raise RuntimeError("the API's sizes and states must be the tables' (cloud_sync.service.tables)")

_PARCELS: Table = Parcel.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_BANKS: Table = LockerBank.__table__  # type: ignore[attr-defined]
_COMPARTMENTS: Table = Compartment.__table__  # type: ignore[attr-defined]
_GATEWAYS: Table = GatewayRow.__table__  # type: ignore[attr-defined]

_P, _B = _PARCELS.c, _BANKS.c
#: Parcel states in which the parcel holds its compartment (deposited, or put in empty so far).
_HOLDING_STATES = ("empty", "waiting")
# A parcel row with its bank's local id and name: every parcel view and command needs them.
_PARCEL_COLUMNS = (*_PARCELS.c, _B.local_id.label("bank_local"), _B.name.label("bank_name"))
_PARCEL_FROM = _PARCELS.join(_BANKS, _B.id == _P.bank_id)
_PARCEL_ROW = select(*_PARCEL_COLUMNS).select_from(_PARCEL_FROM).where(_P.id == bindparam("key"))
_BANK_ROW = select(_BANKS).where(_B.id == bindparam("key"))
_GATEWAY_ROW = select(_GATEWAYS.c.id, _GATEWAYS.c.site_id).where(_GATEWAYS.c.id == bindparam("key"))


# -- models -----------------------------------------------------------------------------------


class _RecipientFields(BaseModel):
    """A bank, and the recipient by exactly one of unit label and phone number."""

    model_config = ConfigDict(extra="forbid", strict=True)
    bank: int = Field(ge=1, le=_MAX_ID, description="the locker bank's id (`/api/v1/locker-banks`)")
    unit: str | None = Field(
        default=None, min_length=1, max_length=40, description="the recipient unit's label"
    )
    phone: str | None = Field(
        default=None,
        min_length=6,
        max_length=32,
        description="the recipient's phone number, looked up by blind index",
    )

    @field_validator("unit")
    @classmethod
    def _printable_unit(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("a unit label is printable text")
        return None if value is None else value.strip()

    @field_validator("phone")
    @classmethod
    def _phone_shaped(cls, value: str | None) -> str | None:
        if value is not None:
            directory.normalize_phone(value)  # InvalidPhone is a ValueError; never echoes input
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> _RecipientFields:
        if (self.unit is None) == (self.phone is None):
            raise ValueError("name the recipient by exactly one of unit and phone")
        return self


class RecipientBody(_RecipientFields):
    """Who is ``unit`` or ``phone`` at the bank's site?"""


class DepositBody(_RecipientFields):
    """A deposit: the bank, the compartment size, the recipient, and optionally a tracking no."""

    size: Size = Field(description="the compartment size: mini, S, M or L")
    tracking: str | None = Field(
        default=None, min_length=1, max_length=64, description="the carrier's tracking number"
    )

    @field_validator("tracking")
    @classmethod
    def _printable_tracking(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ValueError("a tracking number is printable text")
        return None if value is None else value.strip()


class RecipientOut(BaseModel):
    """A recipient as a courier may see it: never a name, the phone only masked."""

    unit: str = Field(description="the unit's label")
    phone_masked: str | None = Field(
        description="e.g. `138****8000`; for a unit, its first current member's; null: none"
    )


class ParcelOut(BaseModel):
    """A parcel. Never carries its pickup code, a resident's name or a phone number."""

    id: str
    bank: int = Field(description="the locker bank's id")
    bank_name: str
    compartment: int | None = Field(description="null until the gateway opens one for it")
    size: str
    unit: str = Field(description="the recipient unit's label")
    company: str | None = Field(description="the courier's company")
    tracking: str | None
    state: State = Field(description="requested, empty, waiting, picked_up, retrieved, …")
    reason: str | None = Field(description="why it failed or was cancelled")
    fee_cents: int | None = Field(description="the fee the gateway recorded at pickup")
    fee_state: str | None = Field(description='"owed" until billing exists')
    fee_due_cents: int | None = Field(
        description="while waiting: the fee if it were picked up now (the cloud's estimate under "
        "the default rules; the gateway's figure at pickup is authoritative)"
    )
    created_at: int
    deposited_at: int | None = Field(description="gateway time, ms")
    picked_up_at: int | None = Field(description="gateway time, ms")
    updated_at: int


class ParcelsOut(BaseModel):
    """Parcels the caller may see, newest first."""

    parcels: list[ParcelOut]
    next_before: str | None = Field(
        default=None, description="more parcels follow: pass as `before` for the next page"
    )


class ParcelsQuery(BaseModel):
    """Paging (``before`` a cursor, ``limit``) and an optional ``state``."""

    model_config = ConfigDict(extra="ignore")
    state: State | None = None
    before: str | None = Field(
        default=None, pattern=_CURSOR.pattern, description="`next_before` of a page"
    )
    limit: int = Field(default=50, ge=1, le=200)


class DepositOut(BaseModel):
    """The deposit was accepted: the parcel (``requested``) and the command opening a door."""

    parcel: ParcelOut
    command: CommandAccepted
    recipient: RecipientOut


class ParcelCommandOut(BaseModel):
    """The command was accepted; follow it at ``GET /api/v1/commands/{command_id}``."""

    parcel: ParcelOut
    command: CommandAccepted


class PickupOut(BaseModel):
    """A remote pickup was accepted; the fee it will record, as far as the cloud can tell."""

    parcel: ParcelOut
    command: CommandAccepted
    fee_cents: int = Field(
        description="the fee as of now under the default rules; the gateway fixes the fee when "
        "it claims the parcel, and its figure (in the parcel, once picked up) is authoritative"
    )
    fee_state: Literal["owed"] = Field(description="recorded as owed until billing exists")


class CodeOut(BaseModel):
    """The pickup code and QR token of a waiting parcel, for its recipient only."""

    code: str = Field(description="the digits to type on the bank's keypad")
    qr_token: str = Field(description="the signed pickup token; `qr.png` renders it")
    expires_at: int = Field(description="when the QR token stops working, ms")


class CompartmentOut(BaseModel):
    """A compartment: its service state as its gateway last reported it, ``occupied`` when the
    cloud knows a parcel is in it."""

    no: int
    size: str
    state: str = Field(description="free, reserved, occupied or out_of_service")
    reason: str | None = Field(description="why it is out of service")


class BankOut(BaseModel):
    """A locker bank and its free compartments per size."""

    id: int = Field(description="names the bank in deposits and lookups")
    local_id: str = Field(description="the bank's id in its gateway's configuration")
    name: str
    gateway: str
    site: int
    free: dict[str, int] = Field(description="free compartments per size (mini, S, M, L)")
    compartments: list[CompartmentOut] | None = Field(
        default=None, description="engineers and admins: every compartment (null for couriers)"
    )


class BanksOut(BaseModel):
    """The banks the caller may see."""

    banks: list[BankOut]


class PassQuery(BaseModel):
    """The gateway the pass is for, and the answer's format."""

    model_config = ConfigDict(extra="ignore")
    gateway: str = Field(pattern=f"^{ID_PATTERN.pattern}$", description="a gateway's id")
    format: Literal["json", "png"] = Field(default="json", description="png: the QR image")


class CourierPassOut(BaseModel):
    """A courier pass: show it (as a QR code) to a bank's camera at that gateway."""

    token: str
    expires_at: int = Field(description="ms since the epoch")


# -- loaders ----------------------------------------------------------------------------------


def _describe(exc: ValidationError) -> str:
    # Name the field and the problem, never echo the input (a phone number).
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)[:3]
    )


async def _bank_of_body(request: web.Request, model: type[_RecipientFields]) -> Resource | None:
    """The bank a body names: the object such a request is about (the guard parses it again)."""
    raw = await request.read()  # cached by aiohttp: the guard's own parse reads it again
    try:
        body = model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc), code="invalid_body") from exc
    async with request.app[DB].autocommit() as conn:
        bank = (await conn.execute(_BANK_ROW, {"key": body.bank})).one_or_none()
    return None if bank is None else BankRes(bank.site_id, bank)


async def load_deposit_bank(request: web.Request, principal: Principal) -> Resource | None:
    """The bank a deposit names in its body."""
    return await _bank_of_body(request, DepositBody)


async def load_lookup_bank(request: web.Request, principal: Principal) -> Resource | None:
    """The bank a recipient lookup names in its body."""
    return await _bank_of_body(request, RecipientBody)


async def load_parcel(request: web.Request, principal: Principal) -> Resource | None:
    """The parcel named in the path, with its bank's local id and name."""
    async with request.app[DB].autocommit() as conn:
        row = (await conn.execute(_PARCEL_ROW, {"key": request.match_info["id"]})).one_or_none()
    if row is None:
        return None
    return ParcelRes(row.site_id, row.unit_id, row.courier_account_id, row)


async def load_pass_gateway(request: web.Request, principal: Principal) -> Resource | None:
    """The gateway a courier pass is asked for (``?gateway=``)."""
    try:
        q = PassQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc), code="invalid_query") from exc
    async with request.app[DB].autocommit() as conn:
        gateway = (await conn.execute(_GATEWAY_ROW, {"key": q.gateway})).one_or_none()
    return None if gateway is None else GatewayRes(gateway.site_id, gateway)


# -- helpers ----------------------------------------------------------------------------------


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not _IDEMPOTENCY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-128 visible ASCII characters", code="invalid_header"
        )
    return key


_IDEMPOTENCY_HEADER = (
    HeaderParam(
        IDEMPOTENCY_KEY,
        "Retrying with the same key returns the same command instead of a new one.",
        128,
    ),
)


def _parcel_out(row: Any, now_ms: int) -> ParcelOut:
    return ParcelOut(
        id=row.id,
        bank=row.bank_id,
        bank_name=row.bank_name,
        compartment=row.compartment,
        size=row.size,
        unit=row.unit_label,
        company=row.company,
        tracking=row.tracking,
        state=row.state,
        reason=row.reason,
        fee_cents=row.fee_cents,
        fee_state=row.fee_state,
        fee_due_cents=estimated_fee(row.deposited_at, now_ms) if row.state == "waiting" else None,
        created_at=row.created_at,
        deposited_at=row.deposited_at,
        picked_up_at=row.picked_up_at,
        updated_at=row.updated_at,
    )


async def _fresh_parcel(request: web.Request, parcel_id: str, now_ms: int) -> ParcelOut:
    async with request.app[DB].autocommit() as conn:
        row = (await conn.execute(_PARCEL_ROW, {"key": parcel_id})).one_or_none()
    if row is None:  # parcels are never deleted
        raise NotFound()
    return _parcel_out(row, now_ms)


def _desk(request: web.Request) -> ParcelDesk:
    return ParcelDesk(request.app[DB], request.app[SETTINGS].command_ttl_ms)


def _accepted(issued: Issued) -> CommandAccepted:
    return CommandAccepted(command_id=issued.command.id, status=issued.status)


def _waiting(row: Any) -> None:
    if row.state != "waiting" or row.code_n is None:
        raise Conflict(f"the parcel is {row.state}, not waiting", code="wrong_state")


# -- banks and recipients ---------------------------------------------------------------------


@table.route(
    "GET",
    "/api/v1/locker-banks",
    action=Action.BANK_LIST,
    load=load_site,
    summary="Locker banks (couriers: of the sites they serve) with free compartments per size",
    response=BanksOut,
)
async def list_locker_banks(request: web.Request) -> web.Response:
    """Banks, filtered per bank through the policy; compartment states only where it allows."""
    principal = request[PRINCIPAL]
    sites = principal.courier_sites if principal.role is Role.COURIER else {principal.site_id}
    c = _COMPARTMENTS.c
    async with request.app[DB].autocommit() as conn:
        rows = (
            await conn.execute(select(_BANKS).where(_B.site_id.in_(sorted(sites))).order_by(_B.id))
        ).all()
        banks = [
            row
            for row in rows
            if decide(principal, Action.BANK_LIST, BankRes(row.site_id, row)).allowed
        ]
        ids = [row.id for row in banks]
        free: dict[int, dict[str, int]] = {i: dict.fromkeys(PARCEL_SIZES, 0) for i in ids}
        detailed = {
            row.id
            for row in banks
            if decide(principal, Action.BANK_COMPARTMENTS, BankRes(row.site_id, row)).allowed
        }
        compartments: dict[int, list[CompartmentOut]] = {i: [] for i in detailed}
        if ids:
            # The gateway reports a compartment's service state (locker.state events); what it
            # holds the cloud knows from its parcels: one holding a parcel that was put in (or a
            # deposit the courier is still at) is occupied, whatever its service state.
            held = {
                (row.bank_id, row.compartment)
                for row in await conn.execute(
                    select(_P.bank_id, _P.compartment).where(
                        _P.bank_id.in_(ids),
                        _P.state.in_(_HOLDING_STATES),
                        _P.compartment.is_not(None),
                    )
                )
            }
            found = await conn.execute(
                select(c.bank_id, c.no, c.size, c.state, c.reason)
                .where(c.bank_id.in_(ids))
                .order_by(c.bank_id, c.no)
            )
            for row in found.all():
                state = row.state
                if state == "free" and (row.bank_id, row.no) in held:
                    state = "occupied"
                if state == "free" and row.size in free[row.bank_id]:
                    free[row.bank_id][row.size] += 1
                if row.bank_id in detailed:
                    compartments[row.bank_id].append(
                        CompartmentOut(no=row.no, size=row.size, state=state, reason=row.reason)
                    )
    out = [
        BankOut(
            id=row.id,
            local_id=row.local_id,
            name=row.name,
            gateway=row.gateway_id,
            site=row.site_id,
            free=free[row.id],
            compartments=compartments.get(row.id),
        )
        for row in banks
    ]
    return json_model(BanksOut(banks=out))


@table.route(
    "POST",
    "/api/v1/recipients/lookup",
    action=Action.RECIPIENT_LOOKUP,
    load=load_lookup_bank,
    summary="Find a recipient at a bank's site by unit or phone: the unit and a masked phone",
    body=RecipientBody,
    response=RecipientOut,
)
async def lookup_recipient(request: web.Request) -> web.Response:
    """The unit and masked phone; 404 for anyone unknown. Never a name."""
    bank = resource_of(request, BankRes)
    body = body_of(request, RecipientBody)
    async with request.app[DB].session() as session:
        found = await find_recipient(
            session,
            request.app[KEYS],
            bank.site_id,
            request.app[CLOCK].now_ms(),
            unit=body.unit,
            phone=body.phone,
        )
    if found is None:
        raise NotFound()
    return json_model(RecipientOut(unit=found.unit_label, phone_masked=found.phone_masked))


# -- parcels ----------------------------------------------------------------------------------


@table.route(
    "POST",
    "/api/v1/parcels",
    action=Action.PARCEL_DEPOSIT,
    load=load_deposit_bank,
    summary="Deposit a parcel: a signed parcel.deposit command opens a compartment for it",
    body=DepositBody,
    response=DepositOut,
    status=202,
    headers=_IDEMPOTENCY_HEADER,
    errors=(409,),
)
async def deposit_parcel(request: web.Request) -> web.Response:
    """Resolve the recipient, create the parcel, queue the command; 202."""
    bank = resource_of(request, BankRes).row
    body = body_of(request, DepositBody)
    app = request.app
    now = app[CLOCK].now_ms()
    async with app[DB].session() as session:
        recipient = await find_recipient(
            session, app[KEYS], bank.site_id, now, unit=body.unit, phone=body.phone
        )
    if recipient is None:
        raise NotFound("no such recipient")
    issued = await _desk(request).deposit(
        app[DISPATCHER],
        request[PRINCIPAL],
        bank,
        recipient,
        size=body.size,
        tracking=body.tracking,
        now_ms=now,
        idempotency_key=_idempotency_key(request),
    )
    out = DepositOut(
        parcel=await _fresh_parcel(request, issued.parcel_id, now),
        command=_accepted(issued),
        recipient=RecipientOut(unit=recipient.unit_label, phone_masked=recipient.phone_masked),
    )
    return json_model(out, 202)


def _page_filter(principal: Principal, q: ParcelsQuery) -> list[Any]:
    """Narrow the query to what the caller could be allowed (the policy still decides each)."""
    if principal.role is Role.RESIDENT:
        where = [_P.site_id == principal.site_id, _P.unit_id.in_(sorted(principal.units()))]
    elif principal.role is Role.COURIER:
        where = [_P.courier_account_id == principal.account_id]
    else:
        where = [_P.site_id == principal.site_id]
    if q.state is not None:
        where.append(_P.state == q.state)
    return where


@table.route(
    "GET",
    "/api/v1/parcels",
    action=Action.PARCEL_LIST,
    load=load_site,
    summary="The parcels the caller may see, newest first (no codes)",
    query=ParcelsQuery,
    response=ParcelsOut,
)
async def list_parcels(request: web.Request) -> web.Response:
    """A page of parcels, each allowed by the policy's ``parcel.read`` decision."""
    principal = request[PRINCIPAL]
    q = query_of(request, ParcelsQuery)
    now = request.app[CLOCK].now_ms()
    where = _page_filter(principal, q)
    cursor = _CURSOR.fullmatch(q.before) if q.before else None
    allowed: list[Any] = []
    async with request.app[DB].autocommit() as conn:
        while len(allowed) <= q.limit:
            stmt = select(*_PARCEL_COLUMNS).select_from(_PARCEL_FROM).where(*where)
            if cursor is not None:
                at, pid = int(cursor.group(1)), cursor.group(2)
                stmt = stmt.where(or_(_P.created_at < at, and_(_P.created_at == at, _P.id < pid)))
            batch: Sequence[Any] = (
                await conn.execute(
                    stmt.order_by(_P.created_at.desc(), _P.id.desc()).limit(q.limit + 1)
                )
            ).all()
            for row in batch:
                res = ParcelRes(row.site_id, row.unit_id, row.courier_account_id, row)
                if decide(principal, Action.PARCEL_READ, res).allowed:
                    allowed.append(row)
            if len(batch) <= q.limit:
                break
            last = batch[-1]
            cursor = _CURSOR.fullmatch(f"{last.created_at}.{last.id}")
    page = allowed[: q.limit]
    more = len(allowed) > q.limit
    last = page[-1] if page else None
    out = ParcelsOut(
        parcels=[_parcel_out(row, now) for row in page],
        next_before=f"{last.created_at}.{last.id}" if more and last is not None else None,
    )
    return json_model(out)


_PARCEL_PATH = "/api/v1/parcels/{id:[0-9a-f]{32}}"


@table.route(
    "GET",
    _PARCEL_PATH,
    action=Action.PARCEL_READ,
    load=load_parcel,
    summary="One parcel (no code)",
    response=ParcelOut,
)
async def get_parcel(request: web.Request) -> web.Response:
    """The parcel's view."""
    row = resource_of(request, ParcelRes).row
    return json_model(_parcel_out(row, request.app[CLOCK].now_ms()))


async def _courier_act(request: web.Request, action: str) -> web.Response:
    row = resource_of(request, ParcelRes).row
    app = request.app
    now = app[CLOCK].now_ms()
    issued = await _desk(request).act(
        app[DISPATCHER],
        request[PRINCIPAL],
        row,
        action,
        now_ms=now,
        idempotency_key=_idempotency_key(request),
    )
    out = ParcelCommandOut(
        parcel=await _fresh_parcel(request, issued.parcel_id, now), command=_accepted(issued)
    )
    return json_model(out, 202)


@table.route(
    "POST",
    _PARCEL_PATH + "/reopen",
    action=Action.PARCEL_COURIER_ACT,
    load=load_parcel,
    summary="Open the compartment of an unfinished deposit again (the depositing courier)",
    response=ParcelCommandOut,
    status=202,
    headers=_IDEMPOTENCY_HEADER,
    errors=(409,),
)
async def reopen_parcel(request: web.Request) -> web.Response:
    """``parcel.reopen``: the deposit is ``requested`` or ``empty`` (else 409 wrong_state)."""
    return await _courier_act(request, REOPEN)


@table.route(
    "POST",
    _PARCEL_PATH + "/cancel",
    action=Action.PARCEL_COURIER_ACT,
    load=load_parcel,
    summary="Cancel an unfinished deposit (the depositing courier)",
    response=ParcelCommandOut,
    status=202,
    headers=_IDEMPOTENCY_HEADER,
    errors=(409,),
)
async def cancel_parcel(request: web.Request) -> web.Response:
    """``parcel.cancel``: the deposit is ``requested`` or ``empty`` (else 409 wrong_state)."""
    return await _courier_act(request, CANCEL)


@table.route(
    "POST",
    _PARCEL_PATH + "/retrieve",
    action=Action.PARCEL_COURIER_ACT,
    load=load_parcel,
    summary="Take back a parcel past its retention (the depositing courier)",
    response=ParcelCommandOut,
    status=202,
    headers=_IDEMPOTENCY_HEADER,
    errors=(409,),
)
async def retrieve_parcel(request: web.Request) -> web.Response:
    """``parcel.retrieve`` of a ``waiting`` parcel; the gateway refuses it before the retention
    has passed (``not_overdue``)."""
    return await _courier_act(request, RETRIEVE)


@table.route(
    "POST",
    _PARCEL_PATH + "/pickup",
    action=Action.PARCEL_PICKUP,
    load=load_parcel,
    summary="Open a waiting parcel's compartment remotely (a resident of its unit)",
    response=PickupOut,
    status=202,
    headers=_IDEMPOTENCY_HEADER,
    errors=(409, 429),
)
async def pickup_parcel(request: web.Request) -> web.Response:
    """``parcel.pickup``; rate limited per account; the fee as of now is shown and audited."""
    row = resource_of(request, ParcelRes).row
    principal = request[PRINCIPAL]
    app = request.app
    now = app[CLOCK].now_ms()
    key = _idempotency_key(request)
    app[PARCEL_LIMITS].pickup(principal.account_id)
    fee = estimated_fee(row.deposited_at, now)
    issued = await _desk(request).act(
        app[DISPATCHER],
        principal,
        row,
        PICKUP,
        now_ms=now,
        idempotency_key=key,
        detail={"fee_cents": fee, "fee_state": "owed"},
    )
    out = PickupOut(
        parcel=await _fresh_parcel(request, issued.parcel_id, now),
        command=_accepted(issued),
        fee_cents=fee,
        fee_state="owed",
    )
    return json_model(out, 202)


async def _reveal(request: web.Request, what: str) -> tuple[Any, str, int]:
    """Check, count and audit a reveal of the parcel's credentials; (row, QR token, expiry)."""
    res = resource_of(request, ParcelRes)
    row = res.row
    principal = request[PRINCIPAL]
    app = request.app
    _waiting(row)
    app[PARCEL_LIMITS].reveal(principal.account_id)
    now = app[CLOCK].now_ms()
    lifetime = min(PICKUP_TOKEN_LIFETIME_MS, PICKUP_MAX_LIFETIME_MS)
    token = pickup_token(app[KEYS], row, row.bank_local, now, lifetime)
    expires_at = now + lifetime
    async with app[DB].session() as session:
        # Committed before anything is shown: no unaudited disclosure. Nothing of the code.
        await audit.append(
            session,
            site_id=res.site_id,
            actor=principal.actor,
            action="parcel.code",
            obj=f"parcel:{row.id}",
            detail={"shown": what},
            ts=now,
        )
        await session.commit()
    return row, token, expires_at


@table.route(
    "GET",
    _PARCEL_PATH + "/code",
    action=Action.PARCEL_CODE,
    load=load_parcel,
    summary="A waiting parcel's pickup code and QR token (residents of its unit only; audited)",
    response=CodeOut,
    errors=(409, 429),
)
async def parcel_code(request: web.Request) -> web.Response:
    """The code (recomputed, never stored) and a fresh signed QR token; rate limited."""
    row, token, expires_at = await _reveal(request, "code")
    code = pickup_code(request.app[KEYS], row)
    resp = json_model(CodeOut(code=code, qr_token=token, expires_at=expires_at))
    resp.headers.update(_NO_STORE)
    return resp


@table.route(
    "GET",
    _PARCEL_PATH + "/qr.png",
    action=Action.PARCEL_CODE,
    load=load_parcel,
    summary="A waiting parcel's pickup QR code as a PNG image (residents of its unit only)",
    errors=(409, 429),
)
async def parcel_qr(request: web.Request) -> web.Response:
    """The QR image of a fresh pickup token; rate limited and audited like ``/code``."""
    _, token, _ = await _reveal(request, "qr")
    png = await asyncio.to_thread(render_qr_png, token)
    return web.Response(body=png, content_type="image/png", headers=_NO_STORE)


# -- couriers ---------------------------------------------------------------------------------


@table.route(
    "GET",
    "/api/v1/courier/pass",
    action=Action.COURIER_PASS,
    load=load_pass_gateway,
    summary="A courier pass for a gateway of a site the courier serves (?format=png: QR image)",
    query=PassQuery,
    response=CourierPassOut,
)
async def courier_pass(request: web.Request) -> web.Response:
    """A signed :class:`~cloud_sync.protocol.tokens.CourierPass`, valid for 12 hours."""
    gateway = resource_of(request, GatewayRes)
    principal = request[PRINCIPAL]
    q = query_of(request, PassQuery)
    app = request.app
    if principal.company is None:  # the policy gives a courier without a company no site
        raise NotFound()
    now = app[CLOCK].now_ms()
    lifetime = min(COURIER_PASS_LIFETIME_MS, COURIER_MAX_LIFETIME_MS)
    body = CourierPass(
        account=principal.account_id,
        company=principal.company,
        gateway=gateway.row.id,
        issued_at=now,
        expires_at=now + lifetime,
        kid=app[KEYS].signing.kid,
    )
    token = sign_token(app[KEYS].signing, body)
    async with app[DB].session() as session:
        await audit.append(
            session,
            site_id=gateway.site_id,
            actor=principal.actor,
            action="courier.pass",
            obj=f"gateway:{gateway.row.id}",
            detail={"expires_at": body.expires_at},
            ts=now,
        )
        await session.commit()
    if q.format == "png":
        png = await asyncio.to_thread(render_qr_png, token)
        return web.Response(body=png, content_type="image/png", headers=_NO_STORE)
    resp = json_model(CourierPassOut(token=token, expires_at=body.expires_at))
    resp.headers.update(_NO_STORE)
    return resp
