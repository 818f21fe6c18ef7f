"""Seeding a community: a site, its buildings, doors, households, meters, lockers and staff.

Used by ``courtyard demo``, the end-to-end tests and the benchmarks. Passwords are generated here
and returned once; only their Argon2 hashes reach the database.

The demo's meters are the ones its simulated RS-485 lines serve (``courtyard.community``): six
DL/T 645 electricity meters ``em-0001``…``em-0006`` (nameplates 000000000001…, the first two
prepaid) and four Modbus water meters ``wm-01``…``wm-04`` (unit ids 1…4). Seeding runs before the
lines start, so both sides derive the ids from the constants and functions below.

The demo's parcel locker bank ``A`` (Building 1 lobby, terminal ``term-a``) has the 16
compartments of the one lock board on its line ``lockers-a``: 4 mini, 6 S, 4 M and 2 L
(:data:`DEMO_LOCKER_COMPARTMENTS`). The plan's ``courier`` staff account is a courier of
:attr:`CommunityPlan.courier_company` serving the site.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.service import directory, provisioning
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.passwords import PasswordHasher
from gateway.settings import MeterKind

__all__ = [
    "DEMO_ELECTRICITY_METERS",
    "DEMO_LOCKER_COMPARTMENTS",
    "DEMO_PREPAID_METERS",
    "DEMO_WATER_METERS",
    "CommunityAccount",
    "CommunityPlan",
    "DoorPlan",
    "LockerBankPlan",
    "MeterPlan",
    "ResidentPlan",
    "default_plan",
    "electricity_meter_id",
    "seed_community",
    "water_meter_id",
]

# Where the demo's meters are, in nameplate (unit id) order: (unit label or None, name).
_DEMO_ELECTRICITY: Final = (
    ("1-201", "1-201 electricity (prepaid)"),
    ("2-101", "2-101 electricity (prepaid)"),
    ("2-202", "2-202 electricity"),
    ("1-202", "1-202 electricity (vacant)"),
    (None, "Building 1 stairwell lighting"),
    (None, ""),  # installed, not yet assigned
)
_DEMO_WATER: Final = (
    ("1-201", "1-201 water"),
    ("2-101", "2-101 water"),
    ("2-202", "2-202 water"),
    (None, "Garden irrigation"),
)

DEMO_ELECTRICITY_METERS: Final = len(_DEMO_ELECTRICITY)
"""DL/T 645 meters on the demo's line ``meters-1`` (nameplates 000000000001…)."""
DEMO_PREPAID_METERS: Final = 2
"""How many of them (the first ones) are prepaid."""
DEMO_WATER_METERS: Final = len(_DEMO_WATER)
"""Modbus RTU water meters on the demo's line ``water-1`` (unit ids 1…)."""


DEMO_LOCKER_COMPARTMENTS: Final[tuple[tuple[int, str], ...]] = tuple(
    (no, "mini" if no <= 4 else "S" if no <= 10 else "M" if no <= 14 else "L")
    for no in range(1, 17)
)
"""The demo bank's compartments ``(no, size)``: 1-4 mini, 5-10 S, 11-14 M, 15-16 L (compartment
``no`` is lock ``no`` of the line's lock board)."""


def electricity_meter_id(number: int) -> str:
    """The gateway id of the demo's DL/T 645 meter with nameplate ``number`` (``em-0001``)."""
    return f"em-{number:04d}"


def water_meter_id(unit: int) -> str:
    """The gateway id of the demo's Modbus water meter with unit id ``unit`` (``wm-01``)."""
    return f"wm-{unit:02d}"


@dataclass(frozen=True)
class CommunityAccount:
    """A login the community was seeded with (passwords are generated, never fixed in code)."""

    login: str
    password: str
    role: str
    unit: str | None = None
    name: str | None = None
    phone: str | None = None
    building: int | None = None


@dataclass(frozen=True)
class DoorPlan:
    """A door to create: in building ``building`` (1-based), named ``name``."""

    local_id: str
    name: str
    building: int


@dataclass(frozen=True)
class ResidentPlan:
    """A resident to create, living in ``unit`` of building ``building``."""

    login: str
    name: str
    unit: str
    building: int
    relation: str = "owner"


@dataclass(frozen=True)
class MeterPlan:
    """A meter to register with the cloud: its id in the gateway's configuration, what it
    measures, the unit it measures (None: common areas or not yet assigned) and a name.

    A unit no resident lives in is created; its building is ``building``, or by default the
    number before the dash of the label (``1-202`` is in building 1).
    """

    local_id: str
    kind: MeterKind
    unit: str | None = None
    name: str = ""
    building: int | None = None

    def building_of_unit(self) -> int:
        """The building of :attr:`unit` (when it has to be created)."""
        if self.building is not None:
            return self.building
        number = (self.unit or "").partition("-")[0]
        if not number.isdigit():
            raise ValueError(f"meter {self.local_id}: give the building of unit {self.unit!r}")
        return int(number)


@dataclass(frozen=True)
class LockerBankPlan:
    """A parcel locker bank to register with the cloud: its id in the gateway's configuration
    (``[[lockers]] id``), a name, its building (1-based), its compartments ``(no, size)`` and the
    device name of its terminal on the site broker (the gateway's business, not the cloud's)."""

    local_id: str
    name: str
    building: int
    compartments: tuple[tuple[int, str], ...]
    terminal: str | None = None


@dataclass(frozen=True)
class CommunityPlan:
    """What to seed."""

    site_name: str = "Courtyard Gardens"
    buildings: int = 2
    doors: tuple[DoorPlan, ...] = ()
    residents: tuple[ResidentPlan, ...] = ()
    meters: tuple[MeterPlan, ...] = ()
    lockers: tuple[LockerBankPlan, ...] = ()
    courier_company: str = "SF Express"
    """The company of the staff accounts with role ``courier``."""
    staff: tuple[tuple[str, str], ...] = (
        ("engineer", "engineer"),
        ("admin", "admin"),
        ("auditor", "auditor"),
        ("courier", "courier"),
    )


def _demo_meters() -> tuple[MeterPlan, ...]:
    electricity = (
        MeterPlan(electricity_meter_id(n), "electricity", unit, name)
        for n, (unit, name) in enumerate(_DEMO_ELECTRICITY, start=1)
    )
    water = (
        MeterPlan(water_meter_id(n), "water", unit, name)
        for n, (unit, name) in enumerate(_DEMO_WATER, start=1)
    )
    return (*electricity, *water)


def default_plan() -> CommunityPlan:
    """Two buildings with two doors each, four residents in three households, the meters of the
    demo's RS-485 lines (an electricity and a water meter for each household's unit, one
    electricity meter of a vacant unit, and common or unassigned ones) and its locker bank."""
    return CommunityPlan(
        doors=(
            DoorPlan("b1-gate", "Building 1 main gate", 1),
            DoorPlan("b1-garage", "Building 1 garage door", 1),
            DoorPlan("b2-gate", "Building 2 main gate", 2),
            DoorPlan("b2-garage", "Building 2 garage door", 2),
        ),
        residents=(
            ResidentPlan("li", "李小红", "1-201", 1, "owner"),
            ResidentPlan("wang", "王芳", "1-201", 1, "member"),
            ResidentPlan("zhang", "张伟", "2-101", 2, "tenant"),
            ResidentPlan("chen", "陈静", "2-202", 2, "owner"),
        ),
        meters=_demo_meters(),
        lockers=(
            LockerBankPlan("A", "Building 1 lobby", 1, DEMO_LOCKER_COMPARTMENTS, terminal="term-a"),
        ),
    )


def _phone() -> str:
    # A random mainland mobile number: the demo's residents are fictional.
    return "13" + "".join(secrets.choice("0123456789") for _ in range(9))


async def seed_community(
    session: AsyncSession,
    keys: CloudKeys,
    hasher: PasswordHasher,
    plan: CommunityPlan,
    *,
    gateway_id: str,
    pulse_ms: int = 3000,
) -> list[CommunityAccount]:
    """Create everything ``plan`` describes (the caller commits); the accounts with passwords.

    Meters and locker banks are registered for ``gateway_id``, each meter in its unit (created
    if no resident lives there) or in none. Staff with role ``courier`` become couriers of
    ``plan.courier_company`` serving the site.
    """
    accounts: list[CommunityAccount] = []
    site = await provisioning.create_site(session, plan.site_name)
    assert site.id is not None
    buildings: dict[int, int] = {}
    for n in range(1, plan.buildings + 1):
        b = await provisioning.create_building(session, site.id, f"Building {n}")
        assert b.id is not None
        buildings[n] = b.id
    await provisioning.create_gateway(session, site.id, gateway_id, "Gateway 1")
    for d in plan.doors:
        await provisioning.create_door(
            session,
            site_id=site.id,
            gateway_id=gateway_id,
            building_id=buildings[d.building],
            local_id=d.local_id,
            name=d.name,
            pulse_ms=pulse_ms,
        )
    units: dict[str, int] = {}
    for r in plan.residents:
        if r.unit not in units:
            u = await provisioning.create_unit(session, site.id, buildings[r.building], r.unit)
            assert u.id is not None
            units[r.unit] = u.id
        phone = _phone()
        resident = await directory.create_resident(session, keys, site.id, r.name, phone)
        assert resident.id is not None
        await provisioning.add_membership(session, site.id, resident.id, units[r.unit], r.relation)
        password = secrets.token_urlsafe(12)
        await provisioning.create_account(
            session,
            hasher,
            site_id=site.id,
            login=r.login,
            password=password,
            role="resident",
            resident_id=resident.id,
        )
        accounts.append(
            CommunityAccount(r.login, password, "resident", r.unit, r.name, phone, r.building)
        )
    for m in plan.meters:
        unit_id = None
        if m.unit is not None:
            if m.unit not in units:
                u = await provisioning.create_unit(
                    session, site.id, buildings[m.building_of_unit()], m.unit
                )
                assert u.id is not None
                units[m.unit] = u.id
            unit_id = units[m.unit]
        await provisioning.create_meter(
            session, site.id, gateway_id, m.local_id, m.kind, unit_id=unit_id, name=m.name
        )
    for bank in plan.lockers:
        await provisioning.create_locker_bank(
            session,
            site.id,
            gateway_id,
            bank.local_id,
            name=bank.name,
            building_id=buildings[bank.building],
            compartments=bank.compartments,
        )
    for login, role in plan.staff:
        password = secrets.token_urlsafe(12)
        if role == "courier":
            await provisioning.create_courier(
                session,
                hasher,
                site_id=site.id,
                login=login,
                password=password,
                company=plan.courier_company,
            )
        else:
            await provisioning.create_account(
                session, hasher, site_id=site.id, login=login, password=password, role=role
            )
        accounts.append(CommunityAccount(login, password, role))
    return accounts
