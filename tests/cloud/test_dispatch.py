"""Dispatch order, the broker being away, and the expiry sweeper."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from cloud_sync.protocol import CommandStatus
from cloud_sync.service.policy import Principal, Role
from cloud_sync.service.state import DISPATCHER, SWEEPER, UNLOCK
from cloud_sync.service.tables import AuditRecord, Command, Door
from courtyard.embedded_broker import free_port


async def _unlock(client: TestClient, door: int, headers: dict[str, str], **kw: Any) -> Any:
    return await client.post(f"/api/v1/doors/{door}/unlock", headers=headers, **kw)


async def test_concurrent_unlocks_reach_the_gateway_in_sequence_order(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    li = await login(api, "li")
    engineer = await login(api, "engineer")
    reason = {"reason": "load test of the strike"}
    requests = [_unlock(api, seeded.door_b1_id, li) for _ in range(8)] + [
        _unlock(api, seeded.door_b2_id, engineer, json=reason) for _ in range(8)
    ]
    responses = await asyncio.gather(*requests)
    assert all(r.status == 202 for r in responses)
    assert {(await r.json())["status"] for r in responses} == {"sent"}
    seqs = [(await fake_gateway.command()).seq for _ in range(16)]
    assert seqs == list(range(1, 17))


async def test_broker_away_answers_queued_and_the_sweeper_expires_it(
    make_api: Any, seeded: Any, login: Any, db: Any
) -> None:
    client: TestClient = await make_api(
        wait_for_broker=False, broker={"port": free_port()}, publish_timeout_ms=50
    )
    li = await login(client, "li")
    resp = await _unlock(client, seeded.door_b1_id, li)
    assert resp.status == 202
    accepted = await resp.json()
    assert accepted["status"] == "queued"
    cid = accepted["command_id"]
    poll = asyncio.create_task(client.get(f"/api/v1/commands/{cid}?wait=20", headers=li))
    async with db.session() as s:
        command = await s.get(Command, cid)
        assert command is not None
    later = command.expires_at + 2_001
    assert await client.app[SWEEPER].sweep_once(later) == [cid]
    view = await (await asyncio.wait_for(poll, 10)).json()
    assert view["status"] == "expired"  # the long poll woke on the sweep
    async with db.session() as s:
        actions = (
            await s.execute(
                select(AuditRecord.action, AuditRecord.object).order_by(AuditRecord.seq)
            )
        ).all()
    assert ("command.expired", f"command:{cid}") in [tuple(a) for a in actions]


async def test_sweeper_leaves_fresh_commands_and_fails_silent_acknowledged_ones(
    make_api: Any, seeded: Any, login: Any, fake_gateway: Any, db: Any
) -> None:
    client: TestClient = await make_api(sweep_interval_s=60)
    li = await login(client, "li")
    cid = (await (await _unlock(client, seeded.door_b1_id, li)).json())["command_id"]
    await fake_gateway.send(
        fake_gateway.event("command.status", {"command": cid, "status": "acknowledged"})
    )
    async with db.session() as s:
        command = await s.get(Command, cid)
        assert command is not None
        assert command.status == "acknowledged"
    sweeper = client.app[SWEEPER]
    assert await sweeper.sweep_once(command.expires_at + 10_000) == []  # acknowledged: wait
    assert await sweeper.sweep_once(command.expires_at + 60_001) == [cid]
    view = await (await client.get(f"/api/v1/commands/{cid}", headers=li)).json()
    assert (view["status"], view["reason"]) == ("failed", "no_outcome")
    # a late outcome changes nothing, and is still acknowledged (and stored)
    await fake_gateway.send(
        fake_gateway.event("command.status", {"command": cid, "status": "opened"})
    )
    view = await (await client.get(f"/api/v1/commands/{cid}", headers=li)).json()
    assert view["status"] == "failed"


async def test_a_command_past_its_expiry_is_never_published(
    api: TestClient, seeded: Any, db: Any, observer: Any
) -> None:
    app = api.app
    async with db.session() as s:
        door = await s.get(Door, seeded.door_b1_id)
    assert door is not None
    li = Principal(
        account_id=seeded.logins["li"].account_id,
        login="li",
        role=Role.RESIDENT,
        site_id=seeded.site_id,
        resident_id=seeded.li_id,
        token_hash="0" * 64,
        at_ms=0,
    )
    long_ago = time.time_ns() // 1_000_000 - 60_000
    stale, _ = await app[UNLOCK].create(
        li, door, now_ms=long_ago, reason=None, reason_required=False, idempotency_key=None
    )
    assert await app[DISPATCHER].dispatch(stale, door) is CommandStatus.EXPIRED
    fresh, _ = await app[UNLOCK].create(
        li,
        door,
        now_ms=time.time_ns() // 1_000_000,
        reason=None,
        reason_required=False,
        idempotency_key=None,
    )
    assert await app[DISPATCHER].dispatch(fresh, door) is CommandStatus.SENT
    # dispatching the same command again publishes nothing more
    assert await app[DISPATCHER].dispatch(fresh, door) is CommandStatus.SENT
    first = await observer.next_on(f"{observer.root}/gw/{seeded.gateway_id}/down/cmd")
    assert fresh.id.encode() in first.payload
    assert app[DISPATCHER].published == 1
