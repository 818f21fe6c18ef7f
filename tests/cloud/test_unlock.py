"""Remote unlock end to end over the real broker: authorise, store, sign, publish, report."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from cloud_sync.service import audit
from cloud_sync.service.tables import AuditRecord, Command, Gateway


async def _unlock(client: TestClient, door: int, headers: dict[str, str], **kw: Any) -> Any:
    return await client.post(f"/api/v1/doors/{door}/unlock", headers=headers, **kw)


async def test_resident_unlocks_and_the_long_poll_wakes_on_opened(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, cloud_keys: Any
) -> None:
    headers = await login(api, "li")
    resp = await _unlock(api, seeded.door_b1_id, headers)
    assert resp.status == 202, await resp.text()
    accepted = await resp.json()
    assert accepted["status"] == "sent"
    cid = accepted["command_id"]

    # the gateway receives a command it can verify: signed, bound to it, short-lived
    body = await fake_gateway.command()
    assert body.id == cid
    assert body.gateway == seeded.gateway_id
    assert body.target == seeded.door_b1_local
    assert body.action == "door.unlock"
    assert body.args == {"pulse_ms": 3000}
    assert body.seq == 1
    assert body.kid == cloud_keys.signing.kid
    assert body.actor == f"account:{seeded.logins['li'].account_id}"
    assert 0 < body.expires_at - body.issued_at <= 30_000

    poll = asyncio.create_task(api.get(f"/api/v1/commands/{cid}?wait=20", headers=headers))
    await fake_gateway.send(
        fake_gateway.event("command.status", {"command": cid, "status": "acknowledged"}),
        fake_gateway.event("command.status", {"command": cid, "status": "opened"}),
    )
    result = await asyncio.wait_for(poll, 10)
    assert result.status == 200
    view = await result.json()
    assert view["command_id"] == cid
    assert view["status"] == "opened"
    assert view["door"] == seeded.door_b1_id
    assert view["updated_at"] >= view["created_at"]
    assert "reason" not in view


async def test_long_poll_without_outcome_returns_the_current_status(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    headers = await login(api, "li")
    cid = (await (await _unlock(api, seeded.door_b1_id, headers)).json())["command_id"]
    resp = await api.get(f"/api/v1/commands/{cid}?wait=0.05", headers=headers)
    assert (await resp.json())["status"] == "sent"
    resp = await api.get(f"/api/v1/commands/{cid}", headers=headers)
    assert (await resp.json())["status"] == "sent"
    resp = await api.get(f"/api/v1/commands/{cid}?wait=26", headers=headers)
    assert resp.status == 422


async def test_released_not_opened_and_rejected_carry_their_reason(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    headers = await login(api, "li")
    first = (await (await _unlock(api, seeded.door_b1_id, headers)).json())["command_id"]
    second = (await (await _unlock(api, seeded.door_b1_id, headers)).json())["command_id"]
    await fake_gateway.send(
        fake_gateway.event("command.status", {"command": first, "status": "acknowledged"}),
        fake_gateway.event("command.status", {"command": first, "status": "released_not_opened"}),
        fake_gateway.event(
            "command.status", {"command": second, "status": "rejected", "reason": "replayed"}
        ),
    )
    one = await (await api.get(f"/api/v1/commands/{first}", headers=headers)).json()
    two = await (await api.get(f"/api/v1/commands/{second}", headers=headers)).json()
    assert one["status"] == "released_not_opened"
    assert (two["status"], two["reason"]) == ("rejected", "replayed")


async def test_other_buildings_door_is_404_and_nothing_reaches_the_broker(
    api: TestClient, login: Any, seeded: Any, observer: Any, db: Any
) -> None:
    zhang = await login(api, "zhang")  # lives in building 2
    resp = await _unlock(api, seeded.door_b1_id, zhang)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    # exactly like a door that does not exist
    missing = await _unlock(api, 999_999, zhang)
    assert (missing.status, await missing.json()) == (404, await resp.json())
    async with db.session() as s:
        assert (await s.execute(select(Command))).scalars().all() == []
    # The next command anyone publishes is seq 1 and it is Li's: an independent observer on
    # '#' saw nothing from Zhang's attempt before it (QoS 1 keeps one publisher's order).
    li = await login(api, "li")
    cid = (await (await _unlock(api, seeded.door_b1_id, li)).json())["command_id"]
    down = f"{observer.root}/gw/{seeded.gateway_id}/down/cmd"
    first = await observer.next_on(down)
    assert cid.encode() in first.payload
    async with db.session() as s:
        gw = await s.get(Gateway, seeded.gateway_id)
        assert gw is not None
        assert gw.command_seq == 1


async def test_idempotency_key_returns_the_same_command(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    li = await login(api, "li")
    key = {"Idempotency-Key": "tap-7f3a"}
    first = await _unlock(api, seeded.door_b1_id, {**li, **key})
    again = await _unlock(api, seeded.door_b1_id, {**li, **key})
    assert first.status == again.status == 202
    one, two = await first.json(), await again.json()
    assert one["command_id"] == two["command_id"]
    await fake_gateway.command()
    async with db.session() as s:
        assert len((await s.execute(select(Command))).scalars().all()) == 1
    # the same key for another door is a client bug
    engineer = await login(api, "engineer")
    other = await _unlock(api, seeded.door_b2_id, {**li, **key}, json={"reason": "x" * 10})
    assert other.status in (404, 409)  # Li may not open b2 at all: 404 before any key check
    # the same key from another account is a different request
    own = await _unlock(
        api, seeded.door_b1_id, {**engineer, **key}, json={"reason": "lock inspection"}
    )
    assert own.status == 202
    assert (await own.json())["command_id"] != one["command_id"]
    conflict = await _unlock(
        api, seeded.door_b2_id, {**engineer, **key}, json={"reason": "lock inspection"}
    )
    assert conflict.status == 409
    assert (await conflict.json())["error"]["code"] == "idempotency_conflict"
    bad = await _unlock(api, seeded.door_b1_id, {**li, "Idempotency-Key": "x" * 129})
    assert (bad.status, (await bad.json())["error"]["code"]) == (422, "invalid_header")


async def test_concurrent_retries_with_one_key_create_one_command(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    li = {**(await login(api, "li")), "Idempotency-Key": "double-tap"}
    results = await asyncio.gather(*(_unlock(api, seeded.door_b1_id, li) for _ in range(5)))
    ids = {(await r.json())["command_id"] for r in results}
    assert all(r.status == 202 for r in results)
    assert len(ids) == 1
    async with db.session() as s:
        assert len((await s.execute(select(Command))).scalars().all()) == 1


async def test_engineer_must_give_a_reason_which_is_audited_sealed(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Any, cloud_keys: Any
) -> None:
    engineer = await login(api, "engineer")
    resp = await _unlock(api, seeded.door_b1_id, engineer)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "reason_required"
    resp = await _unlock(
        api, seeded.door_b1_id, engineer, json={"reason": "strike replacement, ticket 42"}
    )
    assert resp.status == 202
    cid = (await resp.json())["command_id"]
    async with db.session() as s:
        record = (
            await s.execute(
                select(AuditRecord).where(
                    AuditRecord.action == "door.unlock", AuditRecord.site_id == seeded.site_id
                )
            )
        ).scalar_one()
    assert record.actor == f"account:{seeded.logins['engineer'].account_id}"
    assert b"ticket 42" not in record.detail  # sealed at rest
    detail = audit.read_detail(record, cloud_keys.audit_key)
    assert detail == {
        "command": cid,
        "door": seeded.door_b1_id,
        "reason": "strike replacement, ticket 42",
    }


async def test_command_status_is_for_its_issuer_and_site_staff(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    li = await login(api, "li")
    cid = (await (await _unlock(api, seeded.door_b1_id, li)).json())["command_id"]
    for who, status in (
        ("li", 200),
        ("zhang", 404),
        ("courier", 404),
        ("auditor", 404),
        ("engineer", 200),
        ("admin", 200),
    ):
        resp = await api.get(f"/api/v1/commands/{cid}", headers=await login(api, who))
        assert resp.status == status, who


async def test_door_list_is_what_the_caller_may_open(
    api: TestClient, login: Any, seeded: Any
) -> None:
    li = await (await api.get("/api/v1/doors", headers=await login(api, "li"))).json()
    assert li == {
        "doors": [
            {
                "id": seeded.door_b1_id,
                "name": "Building 1 main entrance",
                "building": "1",
                "building_id": seeded.building1_id,
                "online": None,
                "reason_required": False,
            }
        ]
    }
    eng = await (await api.get("/api/v1/doors", headers=await login(api, "engineer"))).json()
    assert [d["id"] for d in eng["doors"]] == [seeded.door_b1_id, seeded.door_b2_id]
    assert all(d["reason_required"] for d in eng["doors"])
