"""The unlock's hot-path shortcuts keep their guarantees.

* the audit append's compare-and-set on a remembered head never forks the chain, with two
  "instances" (two engines) appending to one site in turn and a rolled-back append in between;
* a status change is one UPDATE that decides from the row's real status (a gateway report
  overtaking "sent", then "sent" arriving late, changes nothing back);
* a long poll uses a value handed over by the notifier only when it is final.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import select

from cloud_sync.protocol import CommandStatus
from cloud_sync.service import audit, provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.tables import AuditRecord, Command
from cloud_sync.service.transitions import mark_sent, move
from cloud_sync.service.waiters import CommandWaiters

_S = CommandStatus


async def _site(db: Database) -> int:
    async with db.session() as s:
        site = await provisioning.create_site(s, "Hot Path Court")
        await s.commit()
    assert site.id is not None
    return site.id


async def test_two_instances_appending_in_turn_keep_one_chain(database_url: str, db: Any) -> None:
    site_id = await _site(db)
    other = Database(database_url)  # a second service instance: its own engine, its own hints
    try:
        for i in range(6):
            writer = db if i % 2 == 0 else other
            async with writer.begin() as conn:
                await audit.append(conn, site_id=site_id, actor="a", action="t", obj=f"o:{i}")
            if i == 3:  # an append whose transaction rolls back leaves a stale hint behind
                async with db.begin() as conn:
                    await audit.append(conn, site_id=site_id, actor="a", action="t", obj="gone")
                    await conn.rollback()
        async with db.session() as s:
            assert await audit.verify(s, site_id) == []
            objs = (
                await s.execute(
                    select(AuditRecord.seq, AuditRecord.object)
                    .where(AuditRecord.site_id == site_id)
                    .order_by(AuditRecord.seq)
                )
            ).all()
        assert [o for _, o in objs][-6:] == [f"o:{i}" for i in range(6)]
        assert [q for q, _ in objs] == list(range(1, len(objs) + 1))
    finally:
        await other.dispose()


async def test_a_report_overtaking_sent_wins_and_late_sent_changes_nothing(
    db: Database, seeded: Any
) -> None:
    now = time.time_ns() // 1_000_000
    async with db.session() as s:
        s.add(
            Command(
                id="c" * 32,
                site_id=seeded.site_id,
                gateway_id=seeded.gateway_id,
                target=seeded.door_b1_local,
                door_id=seeded.door_b1_id,
                account_id=seeded.logins["li"].account_id,
                action="door.unlock",
                status="queued",
                issued_at=now,
                expires_at=now + 30_000,
                updated_at=now,
            )
        )
        await s.commit()
    async with db.begin() as conn:
        wrong_gateway = await move(
            conn,
            "c" * 32,
            [(_S.OPENED, None)],
            now_ms=now,
            actor="gateway:x",
            reported_by_gateway=True,
            gateway_id="not-its-gateway",
        )
    assert (wrong_gateway.status, wrong_gateway.changed) == (None, False)
    async with db.begin() as conn:
        moved = await move(
            conn,
            "c" * 32,
            [(_S.ACKNOWLEDGED, None), (_S.OPENED, None)],
            now_ms=now + 1,
            actor=f"gateway:{seeded.gateway_id}",
            reported_by_gateway=True,
            gateway_id=seeded.gateway_id,
        )
    assert (moved.status, moved.changed, moved.updated_at) == (_S.OPENED, True, now + 1)
    async with db.autocommit() as conn:
        late = await mark_sent(conn, "c" * 32, now_ms=now + 2)
    assert (late.status, late.changed) == (_S.OPENED, False)
    async with db.session() as s:
        row = await s.get(Command, "c" * 32)
        assert row is not None
        assert (row.status, row.updated_at) == ("opened", now + 1)
        actions = (
            (
                await s.execute(
                    select(AuditRecord.action).where(AuditRecord.object == "command:" + "c" * 32)
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["command.opened"]  # the terminal status, audited once


async def test_a_long_poll_uses_a_handed_over_value_only_when_final() -> None:
    waiters = CommandWaiters()
    reads: list[str] = []
    stored = {"status": "sent"}

    async def read() -> str:
        reads.append(stored["status"])
        return stored["status"]

    poll = asyncio.create_task(
        waiters.wait_until(
            "x", read, lambda v: v == "opened", 5, known=("sent", waiters.notifications)
        )
    )
    await asyncio.sleep(0.01)
    assert reads == []  # the caller's own read was current: not read again
    stored["status"] = "acknowledged"
    waiters.notify(["x"], {"x": "acknowledged"})  # not final: the waiter reads the row
    await asyncio.sleep(0.01)
    assert reads == ["acknowledged"]
    waiters.notify(["x"], {"x": "opened"})  # final: answered without a read
    assert await asyncio.wait_for(poll, 1) == "opened"
    assert reads == ["acknowledged"]
