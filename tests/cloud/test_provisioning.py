from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from sqlmodel import col, select

from cloud_sync.service import audit, provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.passwords import PasswordHasher
from cloud_sync.service.provisioning import AlreadyExists, InvalidInput
from cloud_sync.service.tables import (
    Account,
    AuditRecord,
    Compartment,
    Courier,
    CourierSite,
    Door,
    LockerBank,
    Membership,
    Unit,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .conftest import Seeded


async def test_seeded_community_is_complete_and_audited(
    db: Database, seeded: Seeded, hasher: PasswordHasher
) -> None:
    async with db.session() as s:
        units = (await s.exec(select(Unit).order_by(col(Unit.label)))).all()
        assert [(u.label, u.building_id) for u in units] == [
            ("1-101", seeded.building1_id),
            ("2-101", seeded.building2_id),
        ]
        doors = (await s.exec(select(Door).order_by(col(Door.local_id)))).all()
        assert [(d.local_id, d.building_id, d.gateway_id, d.pulse_ms) for d in doors] == [
            ("b1-main", seeded.building1_id, "gw-test", 3000),
            ("b2-main", seeded.building2_id, "gw-test", 3000),
        ]
        li = await s.get(Account, seeded.logins["li"].account_id)
        assert li is not None
        assert (li.role, li.resident_id, li.site_id) == ("resident", seeded.li_id, seeded.site_id)
        assert hasher.verify(li.password_hash, seeded.logins["li"].password)
        assert seeded.logins["li"].password not in li.password_hash
        roles = {k: v.role for k, v in seeded.logins.items()}
        assert roles == {
            "li": "resident",
            "zhang": "resident",
            "engineer": "engineer",
            "admin": "admin",
            "auditor": "auditor",
            "courier": "courier",
            "other_courier": "courier",
        }
        actions = Counter((await s.exec(select(AuditRecord.action))).all())
        assert actions == {
            "site.create": 1,
            "building.create": 2,
            "unit.create": 2,
            "resident.create": 2,
            "membership.add": 2,
            "account.create": 7,
            "courier.create": 2,
            "courier_site.add": 2,
            "gateway.create": 1,
            "door.create": 2,
            "meter.create": 3,
            "locker_bank.create": 1,
        }
        assert await audit.verify(s) == []


async def _raises(exc: type[Exception], field: str, call: Callable[[], Awaitable[Any]]) -> None:
    with pytest.raises(exc) as caught:
        await call()
    assert isinstance(caught.value, provisioning.ProvisioningError)
    assert caught.value.field == field


async def test_inputs_are_validated(db: Database, seeded: Seeded, hasher: PasswordHasher) -> None:
    sid = seeded.site_id
    p = provisioning
    async with db.session() as s:
        await _raises(InvalidInput, "name", lambda: p.create_site(s, "  "))
        await _raises(InvalidInput, "site_id", lambda: p.create_building(s, sid + 99, "3"))
        await _raises(InvalidInput, "name", lambda: p.create_building(s, sid, "x" * 101))
        await _raises(InvalidInput, "building_id", lambda: p.create_unit(s, sid, 10**6, "9-9"))
        await _raises(InvalidInput, "label", lambda: p.create_unit(s, sid, seeded.building1_id, ""))
        await _raises(
            AlreadyExists, "label", lambda: p.create_unit(s, sid, seeded.building2_id, "1-101")
        )
        await _raises(
            InvalidInput,
            "relation",
            lambda: p.add_membership(s, sid, seeded.li_id, seeded.unit2_id, "landlord"),
        )
        await _raises(
            AlreadyExists,
            "unit_id",
            lambda: p.add_membership(s, sid, seeded.li_id, seeded.unit1_id, "member"),
        )

        def account(**kw: Any) -> Callable[[], Awaitable[Account]]:
            args: dict[str, Any] = {
                "site_id": sid,
                "login": "newbie",
                "password": "long enough",
                "role": "engineer",
            }
            args.update(kw)
            return lambda: p.create_account(s, hasher, **args)

        await _raises(InvalidInput, "login", account(login="has space"))
        await _raises(InvalidInput, "login", account(login="x" * 65))
        await _raises(InvalidInput, "role", account(role="root"))
        await _raises(InvalidInput, "resident_id", account(role="resident"))
        await _raises(InvalidInput, "resident_id", account(resident_id=seeded.li_id))
        await _raises(InvalidInput, "resident_id", account(role="resident", resident_id=10**6))
        await _raises(InvalidInput, "password", account(password="short"))
        await _raises(AlreadyExists, "login", account(login="li"))
        await _raises(InvalidInput, "site_id", account(site_id=sid + 99))

        await _raises(InvalidInput, "gateway_id", lambda: p.create_gateway(s, sid, "gw/1", "G"))
        await _raises(InvalidInput, "gateway_id", lambda: p.create_gateway(s, sid, "gw#", "G"))
        await _raises(AlreadyExists, "gateway_id", lambda: p.create_gateway(s, sid, "gw-test", "G"))

        def door(**kw: Any) -> Callable[[], Awaitable[Door]]:
            args: dict[str, Any] = {
                "site_id": sid,
                "gateway_id": "gw-test",
                "building_id": seeded.building1_id,
                "local_id": "b1-side",
                "name": "Side door",
            }
            args.update(kw)
            return lambda: p.create_door(s, **args)

        await _raises(InvalidInput, "gateway_id", door(gateway_id="gw-none"))
        await _raises(InvalidInput, "building_id", door(building_id=10**6))
        await _raises(InvalidInput, "local_id", door(local_id=""))
        await _raises(InvalidInput, "local_id", door(local_id="x" * 60))
        await _raises(InvalidInput, "local_id", door(local_id="b1 side"))
        await _raises(InvalidInput, "pulse_ms", door(pulse_ms=99))
        await _raises(InvalidInput, "pulse_ms", door(pulse_ms=30_001))
        await _raises(InvalidInput, "pulse_ms", door(pulse_ms=True))
        await _raises(AlreadyExists, "local_id", door(local_id="b1-main"))
        made = await door(local_id="x" * 59, pulse_ms=100)()
        assert made.id is not None


async def test_objects_of_another_site_are_refused(
    db: Database, site_factory: Callable[..., Awaitable[Seeded]], hasher: PasswordHasher
) -> None:
    a = await site_factory()
    b = await site_factory(prefix="b-", name="Other Court")
    p = provisioning
    async with db.session() as s:
        await _raises(
            InvalidInput, "building_id", lambda: p.create_unit(s, a.site_id, b.building1_id, "9")
        )
        await _raises(
            InvalidInput,
            "resident_id",
            lambda: p.add_membership(s, a.site_id, b.li_id, a.unit1_id, "member"),
        )
        await _raises(
            InvalidInput,
            "unit_id",
            lambda: p.add_membership(s, a.site_id, a.zhang_id, b.unit1_id, "member"),
        )
        await _raises(
            InvalidInput,
            "resident_id",
            lambda: p.create_account(
                s,
                hasher,
                site_id=a.site_id,
                login="cross",
                password="long enough",
                role="resident",
                resident_id=b.li_id,
            ),
        )
        await _raises(
            InvalidInput,
            "gateway_id",
            lambda: p.create_door(
                s,
                site_id=a.site_id,
                gateway_id=b.gateway_id,
                building_id=a.building1_id,
                local_id="x",
                name="X",
            ),
        )
        await _raises(
            InvalidInput,
            "building_id",
            lambda: p.create_door(
                s,
                site_id=a.site_id,
                gateway_id=a.gateway_id,
                building_id=b.building1_id,
                local_id="x",
                name="X",
            ),
        )
        assert await audit.verify(s) == []


async def test_an_ended_membership_can_start_again_and_is_audited(
    db: Database, seeded: Seeded
) -> None:
    async with db.session() as s:
        membership = (
            await s.exec(select(Membership).where(col(Membership.resident_id) == seeded.li_id))
        ).one()
        membership.valid_until = membership.valid_from
        await s.flush()
        again = await provisioning.add_membership(
            s, seeded.site_id, seeded.li_id, seeded.unit1_id, "tenant", actor="admin:7"
        )
        assert again.id == membership.id
        assert (again.relation, again.valid_until) == ("tenant", None)
        record = (
            await s.exec(select(AuditRecord).order_by(col(AuditRecord.seq).desc()).limit(1))
        ).one()
        assert (record.actor, record.action, record.object) == (
            "admin:7",
            "membership.add",
            f"membership:{membership.id}",
        )
        assert audit.read_detail(record) == {
            "relation": "tenant",
            "resident_id": seeded.li_id,
            "unit_id": seeded.unit1_id,
        }


async def test_provisioning_does_not_commit(db: Database) -> None:
    async with db.session() as s:
        site = await provisioning.create_site(s, "Uncommitted Court")
        await provisioning.create_building(s, site.id or 0, "1")
    async with db.session() as s:
        assert (await s.exec(select(AuditRecord))).all() == []


async def test_a_locker_bank_is_created_with_free_compartments_and_audited(
    db: Database, seeded: Seeded
) -> None:
    sid = seeded.site_id
    async with db.session() as s:
        bank = await provisioning.create_locker_bank(
            s,
            sid,
            seeded.gateway_id,
            "L1",
            name=" Building 1 lobby ",
            building_id=seeded.building1_id,
            compartments=[(2, "M"), (1, "S"), (255, "mini")],
            actor="admin:1",
        )
        assert bank.id is not None
        assert (bank.site_id, bank.gateway_id, bank.local_id, bank.name, bank.building_id) == (
            sid,
            seeded.gateway_id,
            "L1",
            "Building 1 lobby",
            seeded.building1_id,
        )
        rows = (
            await s.exec(
                select(Compartment)
                .where(col(Compartment.bank_id) == bank.id)
                .order_by(col(Compartment.no))
            )
        ).all()
        assert [(c.no, c.size, c.state, c.site_id) for c in rows] == [
            (1, "S", "free", sid),
            (2, "M", "free", sid),
            (255, "mini", "free", sid),
        ]
        bare = await provisioning.create_locker_bank(s, sid, seeded.gateway_id, "L2")
        assert (bare.name, bare.building_id) == ("", None)
        record = (
            await s.exec(
                select(AuditRecord).where(
                    col(AuditRecord.action) == "locker_bank.create",
                    col(AuditRecord.object) == f"locker_bank:{bank.id}",
                )
            )
        ).first()
        assert record is not None
        assert (record.actor, record.object) == ("admin:1", f"locker_bank:{bank.id}")
        assert audit.read_detail(record) == {
            "building_id": seeded.building1_id,
            "compartments": [[1, "S"], [2, "M"], [255, "mini"]],
            "gateway_id": seeded.gateway_id,
            "local_id": "L1",
        }
        assert await audit.verify(s) == []


async def test_locker_bank_inputs_are_validated(
    db: Database, site_factory: Callable[..., Awaitable[Seeded]]
) -> None:
    a = await site_factory()
    b = await site_factory(prefix="b-", name="Other Court")
    p = provisioning

    def bank(**kw: Any) -> Callable[[], Awaitable[LockerBank]]:
        args: dict[str, Any] = {"site_id": a.site_id, "gateway_id": a.gateway_id, "local_id": "L1"}
        args.update(kw)
        site_id, gateway_id, local_id = (
            args.pop("site_id"),
            args.pop("gateway_id"),
            args.pop("local_id"),
        )
        return lambda: p.create_locker_bank(s, site_id, gateway_id, local_id, **args)

    async with db.session() as s:
        await _raises(InvalidInput, "gateway_id", bank(gateway_id="gw-none"))
        await _raises(InvalidInput, "gateway_id", bank(gateway_id=b.gateway_id))
        await _raises(InvalidInput, "local_id", bank(local_id=""))
        await _raises(InvalidInput, "local_id", bank(local_id="a b"))
        await _raises(InvalidInput, "local_id", bank(local_id="x" * 65))
        await _raises(InvalidInput, "building_id", bank(building_id=b.building1_id))
        await _raises(InvalidInput, "building_id", bank(building_id=10**6))
        await _raises(InvalidInput, "name", bank(name="x" * 101))
        for bad in ([(0, "S")], [(256, "S")], [(True, "S")], [(1, "XL")], [(1, "S"), (1, "M")]):
            await _raises(InvalidInput, "compartments", bank(compartments=bad))
        await bank(compartments=[(1, "L")])()
        await _raises(AlreadyExists, "local_id", bank())
        await _raises(AlreadyExists, "local_id", bank(local_id="A"))  # the seeded bank
        # The same local id at another gateway is another bank.
        other = await p.create_locker_bank(s, b.site_id, b.gateway_id, "L1")
        assert other.id is not None
        assert await audit.verify(s) == []


async def test_a_courier_serves_its_site_and_the_sites_it_is_given(
    db: Database, site_factory: Callable[..., Awaitable[Seeded]], hasher: PasswordHasher
) -> None:
    a = await site_factory()
    b = await site_factory(prefix="b-", name="Other Court")
    c = await site_factory(prefix="c-", name="Third Court")
    async with db.session() as s:
        account = await provisioning.create_courier(
            s,
            hasher,
            site_id=a.site_id,
            login="sf-wang",
            password="long enough",
            company=" SF Express ",
            sites=[b.site_id, a.site_id, b.site_id],
        )
        assert account.id is not None
        assert (account.role, account.site_id, account.resident_id) == ("courier", a.site_id, None)
        assert hasher.verify(account.password_hash, "long enough")
        courier = await s.get(Courier, account.id)
        assert courier is not None
        assert courier.company == "SF Express"
        served = (
            await s.exec(
                select(CourierSite.site_id).where(col(CourierSite.account_id) == account.id)
            )
        ).all()
        assert sorted(served) == sorted([a.site_id, b.site_id])
        added = await provisioning.add_courier_site(s, account.id, c.site_id, actor="admin:1")
        assert (added.site_id, added.account_id) == (c.site_id, account.id)
        await _raises(
            AlreadyExists,
            "site_id",
            lambda: provisioning.add_courier_site(s, account.id or 0, c.site_id),
        )
        await _raises(
            InvalidInput,
            "site_id",
            lambda: provisioning.add_courier_site(s, account.id or 0, 10**6),
        )
        # Not a courier: a staff account or a resident.
        for short in ("engineer", "li"):
            await _raises(
                InvalidInput,
                "account_id",
                lambda short=short: provisioning.add_courier_site(  # type: ignore[misc]
                    s, a.logins[short].account_id, b.site_id
                ),
            )
        actions = Counter(
            (
                await s.exec(
                    select(AuditRecord.action).where(
                        col(AuditRecord.object) == f"account:{account.id}"
                    )
                )
            ).all()
        )
        assert actions == {"account.create": 1, "courier.create": 1, "courier_site.add": 3}
        assert await audit.verify(s) == []


async def test_courier_inputs_are_validated(
    db: Database, seeded: Seeded, hasher: PasswordHasher
) -> None:
    def courier(**kw: Any) -> Callable[[], Awaitable[Account]]:
        args: dict[str, Any] = {
            "site_id": seeded.site_id,
            "login": "courier2",
            "password": "long enough",
            "company": "JD Logistics",
        }
        args.update(kw)
        return lambda: provisioning.create_courier(s, hasher, **args)

    async with db.session() as s:
        await _raises(InvalidInput, "site_id", courier(site_id=10**6))
        await _raises(InvalidInput, "company", courier(company=""))
        await _raises(InvalidInput, "company", courier(company="x" * 65))
        await _raises(InvalidInput, "company", courier(company="a\nb"))
        await _raises(InvalidInput, "sites", courier(sites=[10**6]))
        await _raises(InvalidInput, "sites", courier(sites=["1"]))
        await _raises(InvalidInput, "login", courier(login="has space"))
        await _raises(InvalidInput, "password", courier(password="short"))
        await _raises(AlreadyExists, "login", courier(login="li"))
        made = await courier(company="x" * 64)()
        assert made.id is not None
    async with db.session() as s:
        # Nothing of the refused attempts was left behind (the session never committed).
        companies = sorted(c.company for c in (await s.exec(select(Courier))).all())
        assert companies == ["SF", "ZTO"]  # the seeded couriers
