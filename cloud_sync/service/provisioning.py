"""Setting up a community: sites, buildings, units, memberships, accounts, gateways, doors, meters,
locker banks and couriers.

Each function validates its inputs (including that every id it is given belongs to the same
site), adds the row, and appends an audit record in the same transaction. None of them commits.
Errors say which input was wrong in ``field`` and never repeat a password or personal data::

    ProvisioningError
    ├── InvalidInput      an input is malformed or names something outside the site (HTTP 422)
    └── AlreadyExists     the login, gateway id, unit label, door, meter, locker bank, courier
                          site or membership exists (HTTP 409)
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.protocol.wire import ID_PATTERN
from cloud_sync.service import audit
from cloud_sync.service.passwords import PasswordHasher
from cloud_sync.service.tables import (
    METER_KINDS,
    PARCEL_SIZES,
    RELATIONS,
    ROLES,
    Account,
    AuditHead,
    Building,
    Compartment,
    Courier,
    CourierSite,
    Door,
    Gateway,
    LockerBank,
    Membership,
    Meter,
    Resident,
    Site,
    Unit,
)

__all__ = [
    "MAX_COMPARTMENT_NO",
    "MAX_PULSE_MS",
    "MIN_PULSE_MS",
    "AlreadyExists",
    "InvalidInput",
    "ProvisioningError",
    "add_courier_site",
    "add_membership",
    "assign_meter",
    "create_account",
    "create_building",
    "create_courier",
    "create_door",
    "create_gateway",
    "create_locker_bank",
    "create_meter",
    "create_site",
    "create_unit",
]

# The door profile's bounds on a strike pulse (devices.door.profile, which we may not import).
MIN_PULSE_MS = 100
MAX_PULSE_MS = 30_000
#: Compartments are numbered 1..255 in their bank (docs/parcels.md).
MAX_COMPARTMENT_NO = 255

_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_DOOR_TARGET_PREFIX = "door:"  # signed commands name a door as door:{local_id}, an id of ≤ 64

_Row = TypeVar("_Row", bound=SQLModel)


class ProvisioningError(Exception):
    """Base of the provisioning errors; ``field`` names the offending input."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidInput(ProvisioningError, ValueError):
    """An input is malformed, or names an object that is not part of the site."""


class AlreadyExists(ProvisioningError):
    """The object to create exists already."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _text(value: str, field: str, max_chars: int) -> str:
    cleaned = unicodedata.normalize("NFC", value).strip()
    if not cleaned or len(cleaned) > max_chars or not cleaned.isprintable():
        raise InvalidInput(field, f"must have 1 to {max_chars} printable characters")
    return cleaned


async def _in_site(
    session: AsyncSession, model: type[_Row], key: Any, site_id: int, field: str
) -> _Row:
    # A missing object and another site's object are the same mistake.
    row = await session.get(model, key)
    if row is None or getattr(row, "site_id", None) != site_id:
        raise InvalidInput(field, "not found in this site")
    return row


async def _site(session: AsyncSession, site_id: int) -> Site:
    site = await session.get(Site, site_id)
    if site is None:
        raise InvalidInput("site_id", "no such site")
    return site


async def _flush(session: AsyncSession, field: str) -> None:
    # The checks before the insert can race with a concurrent insert; the constraint decides.
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(field, "exists already") from exc


async def create_site(session: AsyncSession, name: str, *, actor: str = "system") -> Site:
    """A new site and the head of its audit chain."""
    site = Site(name=_text(name, "name", 200), created_at=_now_ms())
    session.add(site)
    await session.flush()
    if site.id is None:
        raise RuntimeError("site has no id after flush")
    session.add(AuditHead(site_id=site.id))
    await session.flush()
    await audit.append(
        session, site_id=site.id, actor=actor, action="site.create", obj=f"site:{site.id}"
    )
    return site


async def create_building(
    session: AsyncSession, site_id: int, name: str, *, actor: str = "system"
) -> Building:
    """A building of the site."""
    await _site(session, site_id)
    building = Building(site_id=site_id, name=_text(name, "name", 100))
    session.add(building)
    await session.flush()
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="building.create",
        obj=f"building:{building.id}",
        detail={"name": building.name},
    )
    return building


async def create_unit(
    session: AsyncSession, site_id: int, building_id: int, label: str, *, actor: str = "system"
) -> Unit:
    """A dwelling in one of the site's buildings; its label (``3-201``) is unique in the site."""
    await _in_site(session, Building, building_id, site_id, "building_id")
    clean = _text(label, "label", 40)
    taken = await session.exec(
        select(Unit.id).where(col(Unit.site_id) == site_id, col(Unit.label) == clean)
    )
    if taken.first() is not None:
        raise AlreadyExists("label", "a unit of this site has this label")
    unit = Unit(site_id=site_id, building_id=building_id, label=clean)
    session.add(unit)
    await _flush(session, "label")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="unit.create",
        obj=f"unit:{unit.id}",
        detail={"building_id": building_id, "label": clean},
    )
    return unit


async def add_membership(
    session: AsyncSession,
    site_id: int,
    resident_id: int,
    unit_id: int,
    relation: str,
    *,
    actor: str = "system",
) -> Membership:
    """Make a resident an owner, tenant or member of a unit (again, if an earlier one ended)."""
    if relation not in RELATIONS:
        raise InvalidInput("relation", f"must be one of {', '.join(RELATIONS)}")
    resident = await _in_site(session, Resident, resident_id, site_id, "resident_id")
    if resident.erased_at is not None:
        raise InvalidInput("resident_id", "not found in this site")
    await _in_site(session, Unit, unit_id, site_id, "unit_id")
    now = _now_ms()
    existing = (
        await session.exec(
            select(Membership).where(
                col(Membership.resident_id) == resident_id, col(Membership.unit_id) == unit_id
            )
        )
    ).first()
    if existing is not None:
        if existing.valid_until is None or existing.valid_until > now:
            raise AlreadyExists("unit_id", "the resident is a member of this unit already")
        # One row per resident and unit: a returning resident's membership starts afresh.
        existing.relation, existing.valid_from, existing.valid_until = relation, now, None
        membership = existing
    else:
        membership = Membership(
            site_id=site_id,
            resident_id=resident_id,
            unit_id=unit_id,
            relation=relation,
            valid_from=now,
        )
        session.add(membership)
    await _flush(session, "unit_id")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="membership.add",
        obj=f"membership:{membership.id}",
        detail={"resident_id": resident_id, "unit_id": unit_id, "relation": relation},
    )
    return membership


async def create_account(
    session: AsyncSession,
    hasher: PasswordHasher,
    *,
    site_id: int,
    login: str,
    password: str,
    role: str,
    resident_id: int | None = None,
    actor: str = "system",
) -> Account:
    """A login for a resident (``resident_id`` required) or a staff member (none allowed)."""
    await _site(session, site_id)
    if not _LOGIN.fullmatch(login):
        raise InvalidInput(
            "login", "1-64 of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit"
        )
    if role not in ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(ROLES)}")
    if (role == "resident") != (resident_id is not None):
        raise InvalidInput("resident_id", "required for a resident account, refused for staff")
    if resident_id is not None:
        resident = await _in_site(session, Resident, resident_id, site_id, "resident_id")
        if resident.erased_at is not None:
            raise InvalidInput("resident_id", "not found in this site")
    taken = await session.exec(select(Account.id).where(col(Account.login) == login))
    if taken.first() is not None:
        raise AlreadyExists("login", "this login is taken")
    try:
        password_hash = await hasher.ahash(password)
    except ValueError as exc:
        raise InvalidInput("password", str(exc)) from None
    account = Account(
        site_id=site_id,
        login=login,
        password_hash=password_hash,
        role=role,
        resident_id=resident_id,
        created_at=_now_ms(),
    )
    session.add(account)
    await _flush(session, "login")
    # The login itself may be personal (a phone number): it stays out of the audit detail.
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="account.create",
        obj=f"account:{account.id}",
        detail={"role": role, "resident_id": resident_id},
    )
    return account


async def create_gateway(
    session: AsyncSession, site_id: int, gateway_id: str, name: str, *, actor: str = "system"
) -> Gateway:
    """Register a site's gateway; its id names its MQTT topics and its signed commands."""
    await _site(session, site_id)
    if not ID_PATTERN.fullmatch(gateway_id):
        raise InvalidInput("gateway_id", "1-64 of A-Z a-z 0-9 _ . : -")
    if await session.get(Gateway, gateway_id) is not None:
        raise AlreadyExists("gateway_id", "a gateway has this id")
    gateway = Gateway(id=gateway_id, site_id=site_id, name=_text(name, "name", 100))
    session.add(gateway)
    await _flush(session, "gateway_id")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="gateway.create",
        obj=f"gateway:{gateway_id}",
        detail={"name": gateway.name},
    )
    return gateway


async def create_door(
    session: AsyncSession,
    *,
    site_id: int,
    gateway_id: str,
    building_id: int,
    local_id: str,
    name: str,
    pulse_ms: int = 3000,
    actor: str = "system",
) -> Door:
    """A door of a building, controlled by a gateway of the same site."""
    await _in_site(session, Gateway, gateway_id, site_id, "gateway_id")
    await _in_site(session, Building, building_id, site_id, "building_id")
    if not ID_PATTERN.fullmatch(_DOOR_TARGET_PREFIX + local_id) or not local_id:
        raise InvalidInput("local_id", "1-59 of A-Z a-z 0-9 _ . : -")
    if isinstance(pulse_ms, bool) or not MIN_PULSE_MS <= pulse_ms <= MAX_PULSE_MS:
        raise InvalidInput("pulse_ms", f"must be {MIN_PULSE_MS} to {MAX_PULSE_MS}")
    taken = await session.exec(
        select(Door.id).where(col(Door.gateway_id) == gateway_id, col(Door.local_id) == local_id)
    )
    if taken.first() is not None:
        raise AlreadyExists("local_id", "the gateway has a door with this id")
    door = Door(
        site_id=site_id,
        gateway_id=gateway_id,
        building_id=building_id,
        local_id=local_id,
        name=_text(name, "name", 100),
        pulse_ms=pulse_ms,
    )
    session.add(door)
    await _flush(session, "local_id")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="door.create",
        obj=f"door:{door.id}",
        detail={
            "building_id": building_id,
            "gateway_id": gateway_id,
            "local_id": local_id,
            "pulse_ms": pulse_ms,
        },
    )
    return door


async def create_meter(
    session: AsyncSession,
    site_id: int,
    gateway_id: str,
    local_id: str,
    kind: str,
    *,
    unit_id: int | None = None,
    name: str = "",
    actor: str = "system",
) -> Meter:
    """A meter a gateway of the site reads; ``unit_id`` is the dwelling it measures (or None).

    ``local_id`` is the meter's id in the gateway's configuration: what its readings and the
    signed ``meter.read`` commands name. ``name`` may be empty (a meter is known by its unit).
    """
    await _in_site(session, Gateway, gateway_id, site_id, "gateway_id")
    if not ID_PATTERN.fullmatch(local_id):
        raise InvalidInput("local_id", "1-64 of A-Z a-z 0-9 _ . : -")
    if kind not in METER_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(METER_KINDS)}")
    if unit_id is not None:
        await _in_site(session, Unit, unit_id, site_id, "unit_id")
    clean_name = _text(name, "name", 100) if name.strip() else ""
    taken = await session.exec(
        select(Meter.id).where(col(Meter.gateway_id) == gateway_id, col(Meter.local_id) == local_id)
    )
    if taken.first() is not None:
        raise AlreadyExists("local_id", "the gateway has a meter with this id")
    meter = Meter(
        site_id=site_id,
        gateway_id=gateway_id,
        local_id=local_id,
        unit_id=unit_id,
        kind=kind,
        name=clean_name,
        created_at=_now_ms(),
    )
    session.add(meter)
    await _flush(session, "local_id")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="meter.create",
        obj=f"meter:{meter.id}",
        detail={"gateway_id": gateway_id, "local_id": local_id, "kind": kind, "unit_id": unit_id},
    )
    return meter


async def assign_meter(
    session: AsyncSession,
    site_id: int,
    meter_id: int,
    unit_id: int | None,
    *,
    actor: str = "system",
) -> Meter:
    """Say which dwelling a meter measures (None: common areas, or no longer assigned).

    From then on the unit's residents, and no longer the previous unit's, may read its series.
    """
    meter = await _in_site(session, Meter, meter_id, site_id, "meter_id")
    if unit_id is not None:
        await _in_site(session, Unit, unit_id, site_id, "unit_id")
    previous = meter.unit_id
    meter.unit_id = unit_id
    session.add(meter)
    await session.flush()
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="meter.assign",
        obj=f"meter:{meter_id}",
        detail={"unit_id": unit_id, "previous_unit_id": previous},
    )
    return meter


async def create_locker_bank(
    session: AsyncSession,
    site_id: int,
    gateway_id: str,
    local_id: str,
    *,
    name: str = "",
    building_id: int | None = None,
    compartments: Sequence[tuple[int, str]] = (),
    actor: str = "system",
) -> LockerBank:
    """A bank of parcel lockers a gateway of the site runs, with its compartments (all ``free``).

    ``local_id`` is the bank's id in the gateway's configuration (``[[lockers]] id``): the target
    of the signed parcel commands. ``compartments`` are ``(no, size)`` pairs, ``no`` 1..255 and
    unique in the bank, ``size`` one of ``mini``, ``S``, ``M``, ``L``; the gateway reports their
    state from then on (``locker.state`` events).
    """
    await _in_site(session, Gateway, gateway_id, site_id, "gateway_id")
    if not isinstance(local_id, str) or not ID_PATTERN.fullmatch(local_id):
        raise InvalidInput("local_id", "1-64 of A-Z a-z 0-9 _ . : -")
    if building_id is not None:
        await _in_site(session, Building, building_id, site_id, "building_id")
    clean_name = _text(name, "name", 100) if name.strip() else ""
    seen: set[int] = set()
    for no, size in compartments:
        if isinstance(no, bool) or not isinstance(no, int) or not 1 <= no <= MAX_COMPARTMENT_NO:
            raise InvalidInput("compartments", f"a compartment no is 1 to {MAX_COMPARTMENT_NO}")
        if no in seen:
            raise InvalidInput("compartments", f"compartment {no} is listed twice")
        if size not in PARCEL_SIZES:
            raise InvalidInput("compartments", f"a size is one of {', '.join(PARCEL_SIZES)}")
        seen.add(no)
    taken = await session.exec(
        select(LockerBank.id).where(
            col(LockerBank.gateway_id) == gateway_id, col(LockerBank.local_id) == local_id
        )
    )
    if taken.first() is not None:
        raise AlreadyExists("local_id", "the gateway has a locker bank with this id")
    bank = LockerBank(
        site_id=site_id,
        gateway_id=gateway_id,
        local_id=local_id,
        name=clean_name,
        building_id=building_id,
    )
    session.add(bank)
    await _flush(session, "local_id")
    if bank.id is None:
        raise RuntimeError("locker bank has no id after flush")
    for no, size in sorted(compartments):
        session.add(Compartment(site_id=site_id, bank_id=bank.id, no=no, size=size, state="free"))
    await _flush(session, "compartments")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="locker_bank.create",
        obj=f"locker_bank:{bank.id}",
        detail={
            "gateway_id": gateway_id,
            "local_id": local_id,
            "building_id": building_id,
            "compartments": [[no, size] for no, size in sorted(compartments)],
        },
    )
    return bank


async def create_courier(
    session: AsyncSession,
    hasher: PasswordHasher,
    *,
    site_id: int,
    login: str,
    password: str,
    company: str,
    sites: Sequence[int] = (),
    actor: str = "system",
) -> Account:
    """A courier's account (role ``courier`` at ``site_id``), its company and the sites it serves.

    It serves ``site_id`` and every site in ``sites`` (each must exist).
    """
    await _site(session, site_id)
    clean_company = _text(company, "company", 64)
    served: list[int] = [site_id]
    for other in sites:
        if isinstance(other, bool) or not isinstance(other, int):
            raise InvalidInput("sites", "a site id is an integer")
        if other not in served:
            if await session.get(Site, other) is None:
                raise InvalidInput("sites", f"no such site: {other}")
            served.append(other)
    account = await create_account(
        session,
        hasher,
        site_id=site_id,
        login=login,
        password=password,
        role="courier",
        actor=actor,
    )
    if account.id is None:
        raise RuntimeError("account has no id after flush")
    session.add(Courier(account_id=account.id, company=clean_company))
    await _flush(session, "login")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="courier.create",
        obj=f"account:{account.id}",
        detail={"company": clean_company},
    )
    for other in served:
        await add_courier_site(session, account.id, other, actor=actor)
    return account


async def add_courier_site(
    session: AsyncSession, account_id: int, site_id: int, *, actor: str = "system"
) -> CourierSite:
    """Let a courier account deposit at another site (audited in that site's chain)."""
    await _site(session, site_id)
    account = await session.get(Account, account_id)
    if (
        account is None
        or account.role != "courier"
        or await session.get(Courier, account_id) is None
    ):
        raise InvalidInput("account_id", "no such courier")
    taken = await session.exec(
        select(CourierSite.id).where(
            col(CourierSite.account_id) == account_id, col(CourierSite.site_id) == site_id
        )
    )
    if taken.first() is not None:
        raise AlreadyExists("site_id", "the courier serves this site already")
    row = CourierSite(site_id=site_id, account_id=account_id)
    session.add(row)
    await _flush(session, "site_id")
    await audit.append(
        session,
        site_id=site_id,
        actor=actor,
        action="courier_site.add",
        obj=f"account:{account_id}",
        detail={"account_id": account_id},
    )
    return row
