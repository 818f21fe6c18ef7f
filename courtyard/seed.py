"""Seeding a community: a site, its buildings, doors, households and staff, with fresh passwords.

Used by ``courtyard demo``, the end-to-end tests and the benchmarks. Passwords are generated here
and returned once; only their Argon2 hashes reach the database.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.service import directory, provisioning
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.passwords import PasswordHasher

__all__ = [
    "CommunityAccount",
    "CommunityPlan",
    "DoorPlan",
    "ResidentPlan",
    "default_plan",
    "seed_community",
]


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
class CommunityPlan:
    """What to seed."""

    site_name: str = "Courtyard Gardens"
    buildings: int = 2
    doors: tuple[DoorPlan, ...] = ()
    residents: tuple[ResidentPlan, ...] = ()
    staff: tuple[tuple[str, str], ...] = (
        ("engineer", "engineer"),
        ("admin", "admin"),
        ("auditor", "auditor"),
        ("courier", "courier"),
    )


def default_plan() -> CommunityPlan:
    """Two buildings with two doors each and four households."""
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
    """Create everything ``plan`` describes (the caller commits); the accounts with passwords."""
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
    for login, role in plan.staff:
        password = secrets.token_urlsafe(12)
        await provisioning.create_account(
            session, hasher, site_id=site.id, login=login, password=password, role=role
        )
        accounts.append(CommunityAccount(login, password, role))
    return accounts
