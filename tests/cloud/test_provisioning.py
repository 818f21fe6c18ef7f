from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from sqlmodel import col, select

from cloud_sync.service import audit, provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.passwords import PasswordHasher
from cloud_sync.service.provisioning import AlreadyExists, InvalidInput
from cloud_sync.service.tables import Account, AuditRecord, Door, Membership, Unit

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
        }
        actions = Counter((await s.exec(select(AuditRecord.action))).all())
        assert actions == {
            "site.create": 1,
            "building.create": 2,
            "unit.create": 2,
            "resident.create": 2,
            "membership.add": 2,
            "account.create": 6,
            "gateway.create": 1,
            "door.create": 2,
            "meter.create": 3,
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
