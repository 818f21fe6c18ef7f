from __future__ import annotations

import asyncio
import hashlib
import itertools
import struct
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from cloud_sync.service import audit, provisioning
from cloud_sync.service.audit import AuditError, BrokenLink
from cloud_sync.service.db import Database
from cloud_sync.service.tables import AuditHead, AuditRecord
from trust import DataKey, SealError


async def _site(db: Database, name: str = "Chain Court") -> int:
    async with db.session() as s:
        site = await provisioning.create_site(s, name)
        await s.commit()
    assert site.id is not None
    return site.id


async def _append_many(db: Database, site_id: int, n: int) -> list[AuditRecord]:
    records = []
    async with db.session() as s:
        for i in range(n):
            records.append(
                await audit.append(
                    s,
                    site_id=site_id,
                    actor=f"account:{i}",
                    action="door.unlock",
                    obj=f"door:{i % 3}",
                    detail={"i": i, "reason": "测试"},
                )
            )
        await s.commit()
    return records


async def _verify(db: Database, site_id: int | None = None) -> list[BrokenLink]:
    async with db.session() as s:
        return await audit.verify(s, site_id)


async def _sql(db: Database, statement: str, **params: Any) -> None:
    async with db.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        assert result.rowcount == 1


def test_link_hash_is_the_documented_byte_layout() -> None:
    prev = "ab" * 32
    expected = hashlib.sha256(
        bytes.fromhex(prev)
        + b"courtyard:audit:v1\x00"
        + struct.pack(">qqq", 7, 3, 1_700_000_000_000)
        + b"\x00\x00\x00\x09account:1"
        + b"\x00\x00\x00\x0bdoor.unlock"
        + b"\x00\x00\x00\x0cdoor:b1-main"
        + b"\x00\x00\x00\x02{}"
    ).hexdigest()
    actual = audit.link_hash(
        prev,
        site_id=7,
        seq=3,
        ts=1_700_000_000_000,
        actor="account:1",
        action="door.unlock",
        obj="door:b1-main",
        detail=b"{}",
    )
    assert actual == expected


async def test_a_chain_of_records_verifies(db: Database) -> None:
    site_id = await _site(db)
    records = await _append_many(db, site_id, 20)
    assert [r.seq for r in records] == list(range(2, 22))  # seq 1 is "site.create"
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert await _verify(db) == []
    async with db.session() as s:
        head = await s.get(AuditHead, site_id)
        assert head is not None
        assert (head.seq, head.hash) == (21, records[-1].hash)
        first = (await s.exec(select(AuditRecord).where(col(AuditRecord.seq) == 1))).one()
        assert first.prev_hash == audit.GENESIS_HASH
        assert first.action == "site.create"
        assert audit.read_detail(records[3]) == {"i": 3, "reason": "测试"}


EDITS = {
    "ts": "UPDATE audit_log SET ts = ts + 1 WHERE id = :id",
    "actor": "UPDATE audit_log SET actor = 'mallory' WHERE id = :id",
    "action": "UPDATE audit_log SET action = 'nothing' WHERE id = :id",
    "object": "UPDATE audit_log SET object = 'door:9' WHERE id = :id",
    "detail": "UPDATE audit_log SET detail = :detail WHERE id = :id",
    "prev_hash": "UPDATE audit_log SET prev_hash = :digest WHERE id = :id",
    "hash": "UPDATE audit_log SET hash = :digest WHERE id = :id",
    "seq": "UPDATE audit_log SET seq = seq + 1000 WHERE id = :id",
}


@pytest.mark.parametrize("column", sorted(EDITS))
@pytest.mark.parametrize("position", [0, 4, 9])
async def test_editing_one_column_of_one_row_names_that_row(
    db: Database, column: str, position: int
) -> None:
    site_id = await _site(db)
    records = await _append_many(db, site_id, 10)
    victim = records[position]
    await _sql(db, EDITS[column], id=victim.id, detail=b'{"i":999}', digest="f" * 64)
    broken = await _verify(db)
    assert len(broken) == 1, broken
    assert broken[0].site_id == site_id
    assert broken[0].row_id == victim.id
    assert broken[0].seq in (victim.seq, victim.seq + 1000)


async def test_editing_the_first_records_seq_names_it(db: Database) -> None:
    site_id = await _site(db)
    await _append_many(db, site_id, 3)
    async with db.session() as s:
        first = (await s.exec(select(AuditRecord).where(col(AuditRecord.seq) == 1))).one()
    for new_seq in (0, 77):
        await _sql(db, "UPDATE audit_log SET seq = :seq WHERE id = :id", seq=new_seq, id=first.id)
        (broken,) = await _verify(db)
        assert (broken.row_id, broken.reason) == (first.id, "out_of_place")


async def test_moving_a_row_to_another_site_is_named_in_both_chains(db: Database) -> None:
    site_a, site_b = await _site(db, "A"), await _site(db, "B")
    records = await _append_many(db, site_a, 5)
    victim = records[2]
    await _sql(db, "UPDATE audit_log SET site_id = :b WHERE id = :id", b=site_b, id=victim.id)
    broken = await _verify(db)
    assert {(b.site_id, b.row_id) for b in broken} == {(site_a, victim.id), (site_b, victim.id)}
    assert await _verify(db, site_b) == [b for b in broken if b.site_id == site_b]


async def test_a_deleted_row_is_detected(db: Database) -> None:
    site_id = await _site(db)
    records = await _append_many(db, site_id, 6)
    await _sql(db, "DELETE FROM audit_log WHERE id = :id", id=records[2].id)
    (broken,) = await _verify(db)
    assert broken == BrokenLink(site_id, records[2].seq, records[3].id, "seq_gap")


async def test_a_deleted_last_row_or_an_edited_head_is_detected(db: Database) -> None:
    site_id = await _site(db)
    records = await _append_many(db, site_id, 3)
    await _sql(db, "DELETE FROM audit_log WHERE id = :id", id=records[-1].id)
    assert await _verify(db) == [BrokenLink(site_id, records[-1].seq, None, "head_mismatch")]
    await _sql(
        db,
        "UPDATE audit_heads SET seq = seq - 1, hash = :h WHERE site_id = :s",
        h=records[-2].hash,
        s=site_id,
    )
    # Removing the newest record *and* rewinding the head is consistent: only a checkpoint kept
    # outside the database can reveal it (see docs/data-protection.md).
    assert await _verify(db) == []
    await _sql(db, "UPDATE audit_heads SET hash = :h WHERE site_id = :s", h="0" * 64, s=site_id)
    assert [b.reason for b in await _verify(db)] == ["head_mismatch"]


async def test_concurrent_appends_never_fork_the_chain(db: Database) -> None:
    site_id = await _site(db)

    async def writer(n: int) -> list[int]:
        seqs = []
        for i in range(5):
            async with db.session() as s:
                record = await audit.append(
                    s, site_id=site_id, actor=f"writer:{n}", action="test", obj=f"item:{i}"
                )
                await s.commit()
            seqs.append(record.seq)
        return seqs

    results = await asyncio.gather(*(writer(n) for n in range(8)))
    seqs = sorted(seq for result in results for seq in result)
    assert seqs == list(range(2, 42))
    assert await _verify(db) == []


async def test_an_append_rolled_back_leaves_no_trace(db: Database) -> None:
    site_id = await _site(db)
    async with db.session() as s:
        await audit.append(s, site_id=site_id, actor="a", action="b", obj="c")
        await s.rollback()
    records = await _append_many(db, site_id, 1)
    assert records[0].seq == 2
    assert await _verify(db) == []


async def test_sealed_detail_reads_with_the_key_and_the_chain_survives_its_loss(
    db: Database,
) -> None:
    site_id = await _site(db)
    key, _ = DataKey.generate()
    async with db.session() as s:
        record = await audit.append(
            s,
            site_id=site_id,
            actor="admin:1",
            action="resident.unmask",
            obj="resident:5",
            detail={"reason": "parcel for 李小红"},
            seal_for=key,
        )
        await s.commit()
    assert "李小红".encode() not in record.detail
    assert audit.read_detail(record, key) == {"reason": "parcel for 李小红"}
    assert audit.read_detail(record) is None  # erased (or not given): unreadable
    with pytest.raises(SealError):
        audit.read_detail(record, DataKey.generate()[0])
    assert await _verify(db) == []


async def test_append_refuses_bad_input(db: Database) -> None:
    site_id = await _site(db)
    async with db.session() as s:
        with pytest.raises(AuditError, match="no audit chain"):
            await audit.append(s, site_id=site_id + 1000, actor="a", action="b", obj="c")
        with pytest.raises(AuditError, match="actor"):
            await audit.append(s, site_id=site_id, actor="x" * 65, action="b", obj="c")
        with pytest.raises(AuditError, match="detail"):
            await audit.append(
                s, site_id=site_id, actor="a", action="b", obj="c", detail={"x": "y" * 20_000}
            )
