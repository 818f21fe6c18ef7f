from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import col, select

from cloud_sync.service import audit, directory, provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.directory import InvalidName, InvalidPhone, ResidentProfile
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.tables import Account, AuditRecord, Membership, Resident
from trust import SealError

if TYPE_CHECKING:
    from .conftest import Seeded


@pytest.mark.parametrize(
    "raw",
    [
        "13812348000",
        "+86 138 1234 8000",
        "+86-138-1234-8000",
        "8613812348000",
        "008613812348000",
        "(+86) 138.1234.8000",
        "１３８１２３４８０００",  # full-width digits from an IME
    ],
)
def test_normalize_phone_chinese_mobile(raw: str) -> None:
    assert directory.normalize_phone(raw) == "13812348000"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("021-6234 5678", "02162345678"),  # a Shanghai landline keeps its area code
        ("+44 20 7946 0958", "442079460958"),  # not a Chinese mobile: digits kept
        ("86123456", "86123456"),  # "86" that is not a prefix of a mobile
    ],
)
def test_normalize_phone_other_numbers(raw: str, expected: str) -> None:
    assert directory.normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "abc", "138-1234-800O", "12345", "1" * 16, "++8613812348000", "١٣٨١٢٣٤"]
)
def test_normalize_phone_rejects_garbage_without_echoing_it(raw: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        directory.normalize_phone(raw)
    assert isinstance(caught.value, ValueError)
    assert raw.strip() == "" or raw not in str(caught.value)


@given(st.text(max_size=40))
def test_normalize_phone_returns_digits_or_raises_invalid_phone(raw: str) -> None:
    try:
        digits = directory.normalize_phone(raw)
    except InvalidPhone:
        return
    assert digits.isascii()
    assert digits.isdigit()
    assert 6 <= len(digits) <= 15


def test_masks() -> None:
    assert directory.mask_phone("13812348000") == "138****8000"
    assert directory.mask_phone("02162345678") == "021****5678"
    assert directory.mask_phone("123456") == "****56"
    assert directory.mask_name("李小红") == "李**"
    assert directory.mask_name("欧阳娜娜") == "欧***"
    assert directory.mask_name("李") == "*"
    assert directory.mask_name("") == ""
    assert "李小红" not in repr(ResidentProfile("李小红", "13812348000"))
    assert "13812348000" not in repr(ResidentProfile("李小红", "13812348000"))


async def test_resident_is_stored_sealed_and_reads_back(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded
) -> None:
    async with db.session() as s:
        row = await s.get(Resident, seeded.li_id)
        assert row is not None
        assert row.wrapped_key
        assert row.name_sealed
        assert row.phone_sealed
        assert "李小红".encode() not in row.name_sealed
        assert b"13812348000" not in row.phone_sealed
        assert row.phone_index == cloud_keys.blind.digest("phone", "13812348000")
        profile = await directory.read_profile(s, cloud_keys, seeded.li_id)
        assert profile == ResidentProfile("李小红", "13812348000")
        assert await directory.read_profile(s, cloud_keys, 999_999) is None


async def test_create_resident_validates(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded
) -> None:
    async with db.session() as s:
        with pytest.raises(InvalidName):
            await directory.create_resident(s, cloud_keys, seeded.site_id, "  ", "13812348000")
        with pytest.raises(InvalidName):
            await directory.create_resident(s, cloud_keys, seeded.site_id, "x" * 101, "13812348000")
        with pytest.raises(InvalidPhone):
            await directory.create_resident(s, cloud_keys, seeded.site_id, "王五", "not a phone")


async def test_sealed_values_do_not_open_in_another_row(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded
) -> None:
    async with db.session() as s:
        li = await s.get(Resident, seeded.li_id)
        zhang = await s.get(Resident, seeded.zhang_id)
        assert li is not None
        assert zhang is not None
        # Even with Li's key copied along, the value is bound to Li's row.
        zhang.wrapped_key, zhang.name_sealed = li.wrapped_key, li.name_sealed
        await s.flush()
        with pytest.raises(SealError):
            await directory.read_profile(s, cloud_keys, seeded.zhang_id)


async def test_find_by_phone_within_the_site(
    db: Database, cloud_keys: CloudKeys, site_factory: object, seeded: Seeded
) -> None:
    async with db.session() as s:
        found = await directory.find_by_phone(s, cloud_keys, seeded.site_id, "+86 138-1234-8000")
        assert [r.id for r in found] == [seeded.li_id]
        assert await directory.find_by_phone(s, cloud_keys, seeded.site_id, "13800000000") == []
        assert await directory.find_by_phone(s, cloud_keys, seeded.site_id + 1, "13812348000") == []
        with pytest.raises(InvalidPhone):
            await directory.find_by_phone(s, cloud_keys, seeded.site_id, "nonsense")


async def test_erasure_shreds_and_the_audit_chain_still_verifies(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded
) -> None:
    async with db.session() as s:
        key = await directory.resident_key(s, cloud_keys, seeded.li_id)
        assert key is not None
        sealed = await audit.append(
            s,
            site_id=seeded.site_id,
            actor="admin",
            action="resident.unmask",
            obj=f"resident:{seeded.li_id}",
            detail={"name": "李小红"},
            seal_for=key,
        )
        await directory.erase_resident(s, cloud_keys, seeded.li_id, actor="admin")
        await directory.erase_resident(s, cloud_keys, seeded.li_id)  # idempotent
        await s.commit()
    async with db.session() as s:
        row = await s.get(Resident, seeded.li_id)
        assert row is not None
        assert row.erased_at is not None
        assert (row.wrapped_key, row.name_sealed, row.phone_sealed, row.phone_index) == (
            None,
            None,
            None,
            None,
        )
        assert await directory.read_profile(s, cloud_keys, seeded.li_id) is None
        assert await directory.resident_key(s, cloud_keys, seeded.li_id) is None
        assert await directory.find_by_phone(s, cloud_keys, seeded.site_id, "13812348000") == []
        memberships = (
            await s.exec(select(Membership).where(col(Membership.resident_id) == seeded.li_id))
        ).all()
        assert memberships
        assert all(m.valid_until is not None for m in memberships)
        account = await s.get(Account, seeded.logins["li"].account_id)
        assert account is not None
        assert account.disabled
        zhang = await directory.read_profile(s, cloud_keys, seeded.zhang_id)
        assert zhang is not None
        assert zhang.name == "张伟"
        assert await audit.verify(s) == []
        stored = await s.get(AuditRecord, sealed.id)
        assert stored is not None
        assert audit.read_detail(stored) is None
        actions = (
            await s.exec(
                select(AuditRecord.action).where(
                    col(AuditRecord.object) == f"resident:{seeded.li_id}"
                )
            )
        ).all()
        assert actions == ["resident.create", "resident.unmask", "resident.erase"]
        with pytest.raises(directory.ResidentNotFound):
            await directory.erase_resident(s, cloud_keys, 999_999)
        # An erased resident cannot be given a home or a login again.
        with pytest.raises(provisioning.InvalidInput):
            await provisioning.add_membership(
                s, seeded.site_id, seeded.li_id, seeded.unit2_id, "member"
            )


async def test_rotation_rewraps_every_key_under_the_new_kek(
    db: Database, tmp_path: Path, seeded: Seeded
) -> None:
    key_dir = tmp_path / "cloud-keys"
    old = CloudKeys.load_or_create(key_dir)
    async with db.session() as s:
        for i in range(3):
            await directory.create_resident(s, old, seeded.site_id, f"住户{i}", f"1390000000{i}")
        await s.commit()
    (old_kek,) = key_dir.glob("kek-*.key")
    new_kek = key_dir / "kek-9999-newkey.key"
    new_kek.write_bytes(b"\x42" * 32)
    new_kek.chmod(0o600)
    rotated = CloudKeys.load_or_create(key_dir)
    assert rotated.keyring.current == "9999-newkey"
    async with db.session() as s:
        assert await directory.rotate_keys(s, rotated, limit=2) == 2
        assert await directory.rotate_keys(s, rotated) == 3  # the rest: 5 residents in all
        assert await directory.rotate_keys(s, rotated) == 0
        await s.commit()
    old_kek.unlink()  # the old KEK is no longer needed for anything
    only_new = CloudKeys.load_or_create(key_dir)
    async with db.session() as s:
        wrapped = (await s.exec(select(Resident.wrapped_key))).all()
        assert len(wrapped) == 5
        assert {only_new.keyring.wrapped_by(w) for w in wrapped if w} == {"9999-newkey"}
        profile = await directory.read_profile(s, only_new, seeded.li_id)
        assert profile == ResidentProfile("李小红", "13812348000")
