"""Staff views: residents (masked, unmasked with an audited reason), the audit log, alarms."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from cloud_sync.service import directory
from cloud_sync.service.tables import AuditRecord


async def test_admin_sees_residents_masked(api: TestClient, login: Any, seeded: Any) -> None:
    resp = await api.get(f"/api/v1/residents/{seeded.li_id}", headers=await login(api, "admin"))
    assert resp.status == 200
    assert await resp.json() == {
        "id": seeded.li_id,
        "name": "李**",
        "phone": "138****8000",
        "units": ["1-101"],
        "erased": False,
    }


async def test_unmask_needs_a_reason_and_is_audited_before_disclosure(
    api: TestClient, login: Any, seeded: Any, db: Any, cloud_keys: Any
) -> None:
    admin = await login(api, "admin")
    path = f"/api/v1/residents/{seeded.li_id}/unmask"
    missing = await api.post(path, headers=admin, json={})
    assert missing.status == 422
    assert (await missing.json())["error"]["code"] == "invalid_body"
    resp = await api.post(path, headers=admin, json={"reason": "parcel dispute #17"})
    assert resp.status == 200
    assert await resp.json() == {"id": seeded.li_id, "name": "李小红", "phone": "13812348000"}
    async with db.session() as s:
        record = (
            await s.execute(select(AuditRecord).where(AuditRecord.action == "resident.unmask"))
        ).scalar_one()
        key = await directory.resident_key(s, cloud_keys, seeded.li_id)
    assert record.actor == f"account:{seeded.logins['admin'].account_id}"
    assert record.object == f"resident:{seeded.li_id}"
    assert b"parcel dispute" not in record.detail  # sealed under Li's own key
    # the auditor reads it through the API while Li exists
    auditor = await login(api, "auditor")
    records = (await (await api.get("/api/v1/audit?limit=1000", headers=auditor)).json())["records"]
    unmask = next(r for r in records if r["action"] == "resident.unmask")
    assert unmask["sealed"] is True
    assert unmask["detail"] == {"reason": "parcel dispute #17", "fields": ["name", "phone"]}
    assert key is not None


async def test_erasure_shreds_unmask_reasons_and_the_chain_still_verifies(
    api: TestClient, login: Any, seeded: Any, db: Any, cloud_keys: Any
) -> None:
    admin = await login(api, "admin")
    await api.post(
        f"/api/v1/residents/{seeded.li_id}/unmask", headers=admin, json={"reason": "a reason"}
    )
    async with db.session() as s:
        await directory.erase_resident(s, cloud_keys, seeded.li_id)
        await s.commit()
    auditor = await login(api, "auditor")
    records = (await (await api.get("/api/v1/audit?limit=1000", headers=auditor)).json())["records"]
    unmask = next(r for r in records if r["action"] == "resident.unmask")
    assert (unmask["sealed"], unmask["detail"]) == (True, None)
    verdict = await (await api.get("/api/v1/audit/verify", headers=auditor)).json()
    assert verdict == {"ok": True, "broken": []}
    erased = await (await api.get(f"/api/v1/residents/{seeded.li_id}", headers=admin)).json()
    assert erased == {
        "id": seeded.li_id,
        "name": None,
        "phone": None,
        "units": [],
        "erased": True,
    }


async def test_audit_pages_in_chain_order_and_verify_finds_tampering(
    api: TestClient, login: Any, seeded: Any, db: Any
) -> None:
    auditor = await login(api, "auditor")
    first = (await (await api.get("/api/v1/audit?limit=3", headers=auditor)).json())["records"]
    assert [r["seq"] for r in first] == [1, 2, 3]
    assert first[0]["action"] == "site.create"
    after = await api.get(f"/api/v1/audit?after={first[-1]['seq']}&limit=2", headers=auditor)
    assert [r["seq"] for r in (await after.json())["records"]] == [4, 5]
    async with db.session() as s:
        await s.execute(
            update(AuditRecord)
            .where(AuditRecord.site_id == seeded.site_id, AuditRecord.seq == 2)
            .values(actor="someone-else")
        )
        await s.commit()
    verdict = await (await api.get("/api/v1/audit/verify", headers=auditor)).json()
    assert verdict["ok"] is False
    assert verdict["broken"][0]["seq"] == 2
    assert verdict["broken"][0]["reason"] == "hash_mismatch"


async def test_alarms_filter_and_page(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    await fake_gateway.send(
        *(fake_gateway.event("gateway.alarm", {"kind": f"k{i}"}) for i in range(5))
    )
    engineer = await login(api, "engineer")
    body = await (await api.get("/api/v1/alarms?limit=2", headers=engineer)).json()
    kinds = [a["kind"] for a in body["alarms"]]
    assert kinds == ["k4", "k3"]
    older = await api.get(f"/api/v1/alarms?before={body['alarms'][-1]['id']}", headers=engineer)
    assert [a["kind"] for a in (await older.json())["alarms"]] == ["k2", "k1", "k0"]
    open_only = await (await api.get("/api/v1/alarms?open=true", headers=engineer)).json()
    assert len(open_only["alarms"]) == 5
