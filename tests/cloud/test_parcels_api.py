"""Parcels over the API: recipients, deposits, the courier's and resident's commands, codes, lists.

The seeded community (``tests/cloud/conftest.py``) has bank A on the site's gateway, a parcel
waiting for Li (1-101) deposited by ``courier`` (company SF), and ``other_courier`` (ZTO) serving
the same site. Commands go over the real broker to a fake gateway that verifies them. Each test
runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, select, update
from sqlmodel import col

from cloud_sync.protocol import (
    CourierPass,
    PickupToken,
    TokenRefusal,
    TokenRefused,
    verify_token,
)
from cloud_sync.protocol.pickup_code import derive_code
from cloud_sync.service import provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.policy import (
    Action,
    BankRes,
    GatewayRes,
    MembershipFact,
    ParcelRes,
    Principal,
    Role,
    SelfRes,
    SiteRes,
    decide,
)
from cloud_sync.service.ratelimit import SlidingWindow
from cloud_sync.service.state import PARCEL_LIMITS
from cloud_sync.service.tables import AuditRecord, Command, CourierSite, Notification, Parcel

HOUR = 3_600_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """Both engines: a SQLite file, and PostgreSQL (the suite's usual database when running)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'parcels.db'}"
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL is not running")
    return database_url


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _post(api: TestClient, path: str, headers: dict[str, str], **kw: Any) -> Any:
    return await api.post(path, headers=headers, **kw)


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _set_parcel(db: Database, parcel_id: str, **values: Any) -> None:
    async with db.session() as s:
        await s.execute(update(Parcel).where(col(Parcel.id) == parcel_id).values(**values))
        await s.commit()


def _deposit_body(seeded: Any, **kw: Any) -> dict[str, Any]:
    return {"bank": seeded.bank_id, "size": "M", **kw}


# -- the policy on its own -------------------------------------------------------------------

SITE, OTHER = 1, 2


def _who(role: Role, *, account: int = 7, site: int = SITE, **kw: Any) -> Principal:
    return Principal(
        account_id=account,
        login="x",
        role=role,
        site_id=site,
        resident_id=99 if role is Role.RESIDENT else None,
        token_hash="0" * 64,
        at_ms=1_800_000_000_000,
        **kw,
    )


def _parcel(unit: int | None = 1, courier: int | None = 7, site: int = SITE) -> ParcelRes:
    return ParcelRes(site, unit, courier, row=None)


def test_couriers_act_through_the_sites_they_serve_not_their_account_site() -> None:
    home_only = _who(Role.COURIER, site=SITE, company="SF", courier_sites=frozenset())
    serving = _who(Role.COURIER, site=OTHER, company="SF", courier_sites=frozenset({SITE}))
    for action in (Action.PARCEL_DEPOSIT, Action.RECIPIENT_LOOKUP, Action.BANK_LIST):
        assert not decide(home_only, action, BankRes(SITE, None)).allowed
        assert decide(serving, action, BankRes(SITE, None)).allowed
        assert not decide(serving, action, BankRes(OTHER, None)).allowed
    assert decide(serving, Action.COURIER_PASS, GatewayRes(SITE, None)).allowed
    assert not decide(home_only, Action.COURIER_PASS, GatewayRes(SITE, None)).allowed
    # the depositor acts on its parcel while it serves the site; reading needs only the deposit
    assert decide(serving, Action.PARCEL_COURIER_ACT, _parcel(courier=7)).allowed
    assert not decide(serving, Action.PARCEL_COURIER_ACT, _parcel(courier=8)).allowed
    left = _who(Role.COURIER, company="SF", courier_sites=frozenset({OTHER}))
    assert not decide(left, Action.PARCEL_COURIER_ACT, _parcel(courier=7)).allowed
    assert decide(left, Action.PARCEL_READ, _parcel(courier=7)).allowed
    assert not decide(serving, Action.PARCEL_READ, _parcel(courier=8)).allowed


def test_a_parcels_code_and_remote_open_are_its_units_residents_only() -> None:
    fact = MembershipFact(1, "1-101", 10, 0, None)
    li = _who(Role.RESIDENT, memberships=(fact,))
    zhang = _who(Role.RESIDENT, memberships=(MembershipFact(2, "2-101", 20, 0, None),))
    moved_out = _who(Role.RESIDENT, memberships=(MembershipFact(1, "1-101", 10, 0, 1),))
    courier = _who(Role.COURIER, account=7, company="SF", courier_sites=frozenset({SITE}))
    for action in (Action.PARCEL_CODE, Action.PARCEL_PICKUP, Action.PARCEL_READ):
        assert decide(li, action, _parcel()).allowed
        assert not decide(li, action, _parcel(unit=None)).allowed
        assert not decide(li, action, _parcel(site=OTHER)).allowed
        assert not decide(zhang, action, _parcel()).allowed
        assert not decide(moved_out, action, _parcel()).allowed
    for role in (Role.ENGINEER, Role.ADMIN, Role.AUDITOR):
        staff = _who(role)
        assert not decide(staff, Action.PARCEL_CODE, _parcel()).allowed
        assert not decide(staff, Action.PARCEL_PICKUP, _parcel()).allowed
    # the depositing courier may read it, never see its code or open it for the recipient
    assert decide(courier, Action.PARCEL_READ, _parcel()).allowed
    assert not decide(courier, Action.PARCEL_CODE, _parcel()).allowed
    assert not decide(courier, Action.PARCEL_PICKUP, _parcel()).allowed
    assert decide(_who(Role.ENGINEER), Action.PARCEL_READ, _parcel()).allowed
    assert not decide(_who(Role.AUDITOR), Action.PARCEL_READ, _parcel()).allowed
    # lists: the gate only; notifications: a resident's own
    assert decide(courier, Action.PARCEL_LIST, SiteRes(SITE)).allowed
    assert not decide(_who(Role.AUDITOR), Action.PARCEL_LIST, SiteRes(SITE)).allowed
    assert decide(li, Action.NOTIFICATION_LIST, SelfRes(SITE, 7)).allowed
    assert not decide(_who(Role.ADMIN), Action.NOTIFICATION_LIST, SelfRes(SITE, 7)).allowed
    assert not decide(_who(Role.ENGINEER), Action.BANK_COMPARTMENTS, BankRes(OTHER, None)).allowed
    assert not decide(courier, Action.BANK_COMPARTMENTS, BankRes(SITE, None)).allowed


# -- recipients --------------------------------------------------------------------------------


async def test_a_courier_looks_up_a_recipient_by_unit_or_phone(
    api: TestClient, login: Any, seeded: Any
) -> None:
    courier = await login(api, "courier")
    path = "/api/v1/recipients/lookup"
    by_unit = await _post(api, path, courier, json={"bank": seeded.bank_id, "unit": "1-101"})
    assert await _json(by_unit, 200) == {"unit": "1-101", "phone_masked": "138****8000"}
    for phone in (seeded.li_phone, "+86 138-1234-8000", "0086 13812348000"):
        resp = await _post(api, path, courier, json={"bank": seeded.bank_id, "phone": phone})
        assert await _json(resp, 200) == {"unit": "1-101", "phone_masked": "138****8000"}
        assert seeded.li_name not in await resp.text()
    for unknown in ({"unit": "9-999"}, {"phone": "13900000000"}):
        resp = await _post(api, path, courier, json={"bank": seeded.bank_id, **unknown})
        assert (await _json(resp, 404))["error"]["code"] == "not_found"
    for bad in (
        {"bank": seeded.bank_id},
        {"bank": seeded.bank_id, "unit": "1-101", "phone": seeded.li_phone},
        {"bank": seeded.bank_id, "phone": "not a phone"},
        {"bank": str(seeded.bank_id), "unit": "1-101"},
        {"bank": seeded.bank_id, "unit": "1-101", "name": "x"},
    ):
        resp = await _post(api, path, courier, json=bad)
        body = await _json(resp, 422)
        assert body["error"]["code"] == "invalid_body"
        assert "not a phone" not in await resp.text()
    missing = await _post(api, path, courier, json={"bank": 999_999, "unit": "1-101"})
    assert (await _json(missing, 404))["error"]["code"] == "not_found"


async def test_a_unit_nobody_lives_in_has_no_phone(
    api: TestClient, login: Any, seeded: Any, db: Database
) -> None:
    async with db.session() as s:
        await provisioning.create_unit(s, seeded.site_id, seeded.building1_id, "1-102")
        await s.commit()
    courier = await login(api, "courier")
    resp = await _post(
        api, "/api/v1/recipients/lookup", courier, json={"bank": seeded.bank_id, "unit": "1-102"}
    )
    assert await _json(resp, 200) == {"unit": "1-102", "phone_masked": None}


# -- deposits ----------------------------------------------------------------------------------


async def test_a_deposit_by_unit_creates_the_parcel_and_publishes_its_command(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Database, cloud_keys: Any
) -> None:
    courier = await login(api, "courier")
    resp = await _post(
        api,
        "/api/v1/parcels",
        courier,
        json=_deposit_body(seeded, unit="2-101", tracking="SF1234567890"),
    )
    out = await _json(resp, 202)
    parcel, command = out["parcel"], out["command"]
    assert command["status"] == "sent"
    assert out["recipient"] == {"unit": "2-101", "phone_masked": "139****4321"}
    assert len(parcel["id"]) == 32
    assert {k: parcel[k] for k in ("bank", "size", "unit", "company", "tracking", "state")} == {
        "bank": seeded.bank_id,
        "size": "M",
        "unit": "2-101",
        "company": "SF",
        "tracking": "SF1234567890",
        "state": "requested",
    }
    courier_id = seeded.logins["courier"].account_id
    body = await fake_gateway.command()
    assert body.id == command["command_id"]
    assert (body.action, body.target, body.gateway) == ("parcel.deposit", "A", seeded.gateway_id)
    assert dict(body.args) == {
        "parcel": parcel["id"],
        "size": "M",
        "unit": "2-101",
        "courier": courier_id,
        "company": "SF",
    }
    assert body.actor == f"account:{courier_id}"
    async with db.session() as s:
        row = await s.get(Command, command["command_id"])
        assert row is not None
        assert (row.parcel_id, row.door_id, row.meter_id) == (parcel["id"], None, None)
        stored = await s.get(Parcel, parcel["id"])
        assert stored is not None
        assert (stored.unit_id, stored.courier_account_id, stored.state) == (
            seeded.unit2_id,
            courier_id,
            "requested",
        )
        audited = (
            await s.execute(
                select(AuditRecord).where(col(AuditRecord.object) == f"parcel:{parcel['id']}")
            )
        ).scalars()
        assert [(r.action, r.actor) for r in audited] == [
            ("parcel.deposit", f"account:{courier_id}")
        ]
    # the parcel is the courier's to read, and Zhang's
    for who in ("courier", "zhang"):
        headers = await login(api, who)
        view = await api.get(f"/api/v1/parcels/{parcel['id']}", headers=headers)
        assert (await _json(view, 200))["state"] == "requested"


async def test_a_deposit_by_phone_shows_the_phone_masked_only(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    courier = await login(api, "other_courier")
    resp = await _post(
        api, "/api/v1/parcels", courier, json=_deposit_body(seeded, phone=seeded.li_phone)
    )
    text = await resp.text()
    out = await _json(resp, 202)
    assert out["recipient"] == {"unit": "1-101", "phone_masked": "138****8000"}
    assert out["parcel"]["unit"] == "1-101"
    assert out["parcel"]["company"] == "ZTO"
    assert seeded.li_phone not in text
    assert seeded.li_name not in text
    body = await fake_gateway.command()
    assert body.args["unit"] == "1-101"
    assert body.args["company"] == "ZTO"
    assert seeded.li_phone not in str(dict(body.args))
    unknown = await _post(
        api, "/api/v1/parcels", courier, json=_deposit_body(seeded, phone="13900000000")
    )
    assert unknown.status == 404
    assert fake_gateway.raw_commands.empty()


async def test_a_retried_deposit_is_one_parcel_and_one_command(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Database
) -> None:
    courier = {**(await login(api, "courier")), "Idempotency-Key": "deposit-1"}
    first = await _json(
        await _post(api, "/api/v1/parcels", courier, json=_deposit_body(seeded, unit="1-101")), 202
    )
    again = await _json(
        await _post(api, "/api/v1/parcels", courier, json=_deposit_body(seeded, unit="1-101")), 202
    )
    assert again["parcel"]["id"] == first["parcel"]["id"]
    assert again["command"]["command_id"] == first["command"]["command_id"]
    assert (await fake_gateway.command()).id == first["command"]["command_id"]
    assert fake_gateway.raw_commands.empty()  # published once
    async with db.session() as s:
        parcels = (await s.execute(select(Parcel).where(col(Parcel.tracking).is_(None)))).scalars()
        assert [p.id for p in parcels] == [first["parcel"]["id"]]
    # the key reused for another action (or parcel) is a conflict
    reused = await _post(api, f"/api/v1/parcels/{first['parcel']['id']}/cancel", courier)
    assert (await _json(reused, 409))["error"]["code"] == "idempotency_conflict"
    bad_key = await _post(
        api,
        "/api/v1/parcels",
        {**courier, "Idempotency-Key": "x" * 129},
        json=_deposit_body(seeded, unit="1-101"),
    )
    assert (await _json(bad_key, 422))["error"]["code"] == "invalid_header"


async def test_deposit_bodies_are_strict(api: TestClient, login: Any, seeded: Any) -> None:
    courier = await login(api, "courier")
    for bad in (
        {"bank": seeded.bank_id, "size": "XL", "unit": "1-101"},
        {"bank": seeded.bank_id, "size": "M"},
        {"bank": seeded.bank_id, "unit": "1-101"},
        {"bank": seeded.bank_id, "size": "M", "unit": "1-101", "tracking": "x" * 65},
        {"bank": seeded.bank_id, "size": "M", "unit": "1-101", "tracking": "a\nb"},
        {"bank": seeded.bank_id, "size": "M", "unit": "1-101", "courier": 1},
        {"bank": 0, "size": "M", "unit": "1-101"},
    ):
        resp = await _post(api, "/api/v1/parcels", courier, json=bad)
        assert (await _json(resp, 422))["error"]["code"] == "invalid_body", bad
    not_json = await _post(api, "/api/v1/parcels", courier, data=b"{")
    assert not_json.status == 422


async def test_a_courier_deposits_only_at_the_sites_it_serves(
    api: TestClient, login: Any, seeded: Any, site_factory: Any, db: Database, hasher: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    outsider = other.logins["courier"]
    resp = await api.post(
        "/api/v1/sessions", json={"login": outsider.login, "password": outsider.password}
    )
    headers = {"Authorization": f"Bearer {(await resp.json())['token']}"}
    body = _deposit_body(seeded, unit="1-101")
    assert (await _post(api, "/api/v1/parcels", headers, json=body)).status == 404
    banks = await _json(await api.get("/api/v1/locker-banks", headers=headers), 200)
    assert [b["id"] for b in banks["banks"]] == [other.bank_id]
    # given the site, the same token may deposit there (facts are read per request)
    async with db.session() as s:
        await provisioning.add_courier_site(s, outsider.account_id, seeded.site_id)
        await s.commit()
    assert (await _post(api, "/api/v1/parcels", headers, json=body)).status == 202
    banks = await _json(await api.get("/api/v1/locker-banks", headers=headers), 200)
    assert sorted(b["id"] for b in banks["banks"]) == sorted([seeded.bank_id, other.bank_id])
    # a courier no longer serving its account's own site cannot deposit there
    courier = await login(api, "courier")
    async with db.session() as s:
        await s.execute(
            delete(CourierSite).where(
                col(CourierSite.account_id) == seeded.logins["courier"].account_id
            )
        )
        await s.commit()
    assert (await _post(api, "/api/v1/parcels", courier, json=body)).status == 404
    assert (await _json(await api.get("/api/v1/locker-banks", headers=courier), 200)) == {
        "banks": []
    }
    gone = await api.get(f"/api/v1/courier/pass?gateway={seeded.gateway_id}", headers=courier)
    assert gone.status == 404
    # it still reads what it deposited there, but may no longer act on it
    view = await api.get(f"/api/v1/parcels/{seeded.parcel_id}", headers=courier)
    assert view.status == 200
    retrieve = await _post(api, f"/api/v1/parcels/{seeded.parcel_id}/retrieve", courier)
    assert retrieve.status == 404


# -- the courier's commands ----------------------------------------------------------------------


async def test_reopen_and_cancel_by_the_depositor_of_an_unfinished_deposit_only(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Database
) -> None:
    courier = await login(api, "courier")
    deposited = await _json(
        await _post(api, "/api/v1/parcels", courier, json=_deposit_body(seeded, unit="1-101")), 202
    )
    pid = deposited["parcel"]["id"]
    await fake_gateway.command()
    for who in ("other_courier", "li", "engineer", "admin"):
        headers = await login(api, who)
        for action in ("reopen", "cancel"):
            resp = await _post(api, f"/api/v1/parcels/{pid}/{action}", headers)
            assert resp.status == 404, (who, action)
    assert fake_gateway.raw_commands.empty()
    await _set_parcel(db, pid, state="empty", compartment=3)
    reopened = await _json(await _post(api, f"/api/v1/parcels/{pid}/reopen", courier), 202)
    assert reopened["parcel"]["state"] == "empty"
    body = await fake_gateway.command()
    assert (body.id, body.action, body.target) == (
        reopened["command"]["command_id"],
        "parcel.reopen",
        "A",
    )
    assert dict(body.args) == {"parcel": pid}
    cancelled = await _json(await _post(api, f"/api/v1/parcels/{pid}/cancel", courier), 202)
    body = await fake_gateway.command()
    assert (body.id, body.action, dict(body.args)) == (
        cancelled["command"]["command_id"],
        "parcel.cancel",
        {"parcel": pid},
    )
    async with db.session() as s:
        commands = (await s.execute(select(Command).where(col(Command.parcel_id) == pid))).scalars()
        assert sorted(c.action for c in commands) == [
            "parcel.cancel",
            "parcel.deposit",
            "parcel.reopen",
        ]
    # a deposit that is done (the seeded parcel waits for Li) can be neither reopened nor cancelled
    for action in ("reopen", "cancel"):
        resp = await _post(api, f"/api/v1/parcels/{seeded.parcel_id}/{action}", courier)
        assert (await _json(resp, 409))["error"]["code"] == "wrong_state"
    assert fake_gateway.raw_commands.empty()


async def test_the_depositor_retrieves_a_waiting_parcel(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Database
) -> None:
    for who in ("other_courier", "li", "engineer"):
        resp = await _post(
            api, f"/api/v1/parcels/{seeded.parcel_id}/retrieve", await login(api, who)
        )
        assert resp.status == 404, who
    courier = await login(api, "courier")
    out = await _json(
        await _post(api, f"/api/v1/parcels/{seeded.parcel_id}/retrieve", courier), 202
    )
    body = await fake_gateway.command()
    assert (body.id, body.action, body.target) == (
        out["command"]["command_id"],
        "parcel.retrieve",
        "A",
    )
    assert dict(body.args) == {
        "parcel": seeded.parcel_id,
        "courier": seeded.logins["courier"].account_id,
    }
    await _set_parcel(db, seeded.parcel_id, state="retrieved")
    again = await _post(api, f"/api/v1/parcels/{seeded.parcel_id}/retrieve", courier)
    assert (await _json(again, 409))["error"]["code"] == "wrong_state"


# -- the resident: pickup, code, QR --------------------------------------------------------------


async def test_a_remote_pickup_shows_the_fee_and_only_for_a_waiting_parcel(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Database
) -> None:
    path = f"/api/v1/parcels/{seeded.parcel_id}/pickup"
    for who in ("zhang", "courier", "engineer", "admin"):
        assert (await _post(api, path, await login(api, who))).status == 404, who
    # 30 h stored: 12 h free, then two started periods of 12 h at 50 cents
    await _set_parcel(db, seeded.parcel_id, deposited_at=now_ms() - 30 * HOUR)
    li = await login(api, "li")
    before = await _json(await api.get(f"/api/v1/parcels/{seeded.parcel_id}", headers=li), 200)
    assert before["fee_due_cents"] == 100
    out = await _json(await _post(api, path, li), 202)
    assert (out["fee_cents"], out["fee_state"]) == (100, "owed")
    assert out["parcel"]["id"] == seeded.parcel_id
    body = await fake_gateway.command()
    assert (body.id, body.action, body.target, dict(body.args)) == (
        out["command"]["command_id"],
        "parcel.pickup",
        "A",
        {"parcel": seeded.parcel_id},
    )
    async with db.session() as s:
        record = (
            await s.execute(
                select(AuditRecord).where(
                    col(AuditRecord.action) == "parcel.pickup",
                    col(AuditRecord.object) == f"parcel:{seeded.parcel_id}",
                )
            )
        ).scalar_one()
        assert b'"fee_cents":100' in record.detail
    for state in ("picked_up", "requested", "empty", "retrieved", "cancelled", "failed"):
        await _set_parcel(db, seeded.parcel_id, state=state)
        resp = await _post(api, path, li)
        assert (await _json(resp, 409))["error"]["code"] == "wrong_state", state
    assert fake_gateway.raw_commands.empty()


async def test_remote_pickups_are_rate_limited_per_account(
    api: TestClient, login: Any, seeded: Any
) -> None:
    api.app[PARCEL_LIMITS].pickups = SlidingWindow(2, 600)
    li = await login(api, "li")
    path = f"/api/v1/parcels/{seeded.parcel_id}/pickup"
    assert [(await _post(api, path, li)).status for _ in range(2)] == [202, 202]
    limited = await _post(api, path, li)
    assert (await _json(limited, 429))["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


async def test_the_code_and_qr_token_are_the_recipients_and_verify_at_the_gateway(
    api: TestClient, login: Any, seeded: Any, cloud_keys: Any, db: Database
) -> None:
    path = f"/api/v1/parcels/{seeded.parcel_id}"
    for who in ("zhang", "courier", "other_courier", "engineer", "admin", "auditor"):
        headers = await login(api, who)
        assert (await api.get(f"{path}/code", headers=headers)).status == 404, who
        assert (await api.get(f"{path}/qr.png", headers=headers)).status == 404, who
    li = await login(api, "li")
    resp = await api.get(f"{path}/code", headers=li)
    out = await _json(resp, 200)
    assert resp.headers["Cache-Control"] == "no-store"
    key = cloud_keys.gateway_code_key(seeded.gateway_id)
    assert out["code"] == derive_code(key, seeded.parcel_id, 0)
    assert len(out["code"]) == 8
    verify_keys = {cloud_keys.signing.kid: cloud_keys.signing.verify_key}
    token = verify_token(out["qr_token"], verify_keys, seeded.gateway_id, now_ms())
    assert isinstance(token, PickupToken)
    assert (token.parcel, token.bank, token.gateway) == (seeded.parcel_id, "A", seeded.gateway_id)
    assert token.expires_at == out["expires_at"]
    with pytest.raises(TokenRefused) as refused:
        verify_token(out["qr_token"], verify_keys, "gw-elsewhere", now_ms())
    assert refused.value.reason is TokenRefusal.WRONG_GATEWAY

    png_resp = await api.get(f"{path}/qr.png", headers=li)
    assert png_resp.status == 200
    assert png_resp.content_type == "image/png"
    assert png_resp.headers["Cache-Control"] == "no-store"
    png = await png_resp.read()
    assert png.startswith(PNG_MAGIC)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    text, _, _ = cv2.QRCodeDetectorAruco().detectAndDecode(img)
    shown = verify_token(text, verify_keys, seeded.gateway_id, now_ms())
    assert isinstance(shown, PickupToken)
    assert shown.parcel == seeded.parcel_id

    # each reveal is audited, without the code
    async with db.session() as s:
        records = (
            await s.execute(select(AuditRecord).where(col(AuditRecord.action) == "parcel.code"))
        ).scalars()
        rows = list(records)
        assert [(r.actor, r.object) for r in rows] == [
            (f"account:{seeded.logins['li'].account_id}", f"parcel:{seeded.parcel_id}")
        ] * 2
        assert all(out["code"].encode() not in r.detail for r in rows)
    # picked up: no code any more
    await _set_parcel(db, seeded.parcel_id, state="picked_up")
    for suffix in ("code", "qr.png"):
        gone = await api.get(f"{path}/{suffix}", headers=li)
        assert (await _json(gone, 409))["error"]["code"] == "wrong_state"


async def test_revealing_codes_is_rate_limited_per_account(
    api: TestClient, login: Any, seeded: Any
) -> None:
    li = await login(api, "li")
    path = f"/api/v1/parcels/{seeded.parcel_id}"
    statuses = [(await api.get(f"{path}/code", headers=li)).status for _ in range(9)]
    statuses.append((await api.get(f"{path}/qr.png", headers=li)).status)
    assert statuses == [200] * 10
    limited = await api.get(f"{path}/code", headers=li)
    assert (await _json(limited, 429))["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await api.get(f"{path}/qr.png", headers=li)).status == 429
    # the parcel's view is not limited
    assert (await api.get(path, headers=li)).status == 200


# -- courier pass -------------------------------------------------------------------------------


async def test_a_courier_pass_verifies_for_the_gateway_of_a_site_it_serves(
    api: TestClient, login: Any, seeded: Any, cloud_keys: Any, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    courier = await login(api, "courier")
    resp = await api.get(f"/api/v1/courier/pass?gateway={seeded.gateway_id}", headers=courier)
    out = await _json(resp, 200)
    assert resp.headers["Cache-Control"] == "no-store"
    verify_keys = {cloud_keys.signing.kid: cloud_keys.signing.verify_key}
    token = verify_token(out["token"], verify_keys, seeded.gateway_id, now_ms())
    assert isinstance(token, CourierPass)
    assert (token.account, token.company, token.gateway) == (
        seeded.logins["courier"].account_id,
        "SF",
        seeded.gateway_id,
    )
    assert token.expires_at == out["expires_at"]
    assert 0 < token.expires_at - token.issued_at <= 24 * HOUR
    png = await api.get(
        f"/api/v1/courier/pass?gateway={seeded.gateway_id}&format=png", headers=courier
    )
    assert png.status == 200
    assert png.content_type == "image/png"
    assert (await png.read()).startswith(PNG_MAGIC)
    elsewhere = await api.get(f"/api/v1/courier/pass?gateway={other.gateway_id}", headers=courier)
    assert elsewhere.status == 404
    for bad in ("/api/v1/courier/pass", "/api/v1/courier/pass?gateway=a%20b"):
        assert (await _json(await api.get(bad, headers=courier), 422))["error"]["code"] == (
            "invalid_query"
        )
    bad_format = f"/api/v1/courier/pass?gateway={seeded.gateway_id}&format=gif"
    assert (await api.get(bad_format, headers=courier)).status == 422


# -- lists ---------------------------------------------------------------------------------------


async def _ids(api: TestClient, headers: dict[str, str], query: str = "") -> list[str]:
    out = await _json(await api.get(f"/api/v1/parcels{query}", headers=headers), 200)
    return [p["id"] for p in out["parcels"]]


async def test_parcel_lists_follow_the_relationship_newest_first(
    api: TestClient, login: Any, seeded: Any, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    courier = await login(api, "courier")
    newer = []
    for unit in ("2-101", "1-101"):
        out = await _json(
            await _post(api, "/api/v1/parcels", courier, json=_deposit_body(seeded, unit=unit)),
            202,
        )
        newer.append(out["parcel"]["id"])
    # newest first: the second deposit, the first, then the seeded (older) parcel
    expected = {
        "li": [newer[1], seeded.parcel_id],
        "zhang": [newer[0]],
        "courier": [newer[1], newer[0], seeded.parcel_id],
        "other_courier": [],
        "engineer": [newer[1], newer[0], seeded.parcel_id],
        "admin": [newer[1], newer[0], seeded.parcel_id],
    }
    for who, ids in expected.items():
        assert await _ids(api, await login(api, who), "") == ids, who
    resp = await api.post(
        "/api/v1/sessions",
        json={"login": other.logins["admin"].login, "password": other.logins["admin"].password},
    )
    other_admin = {"Authorization": f"Bearer {(await resp.json())['token']}"}
    assert await _ids(api, other_admin) == [other.parcel_id]
    # paging and the state filter
    first = await _json(await api.get("/api/v1/parcels?limit=2", headers=courier), 200)
    assert [p["id"] for p in first["parcels"]] == [newer[1], newer[0]]
    cursor = first["next_before"]
    assert cursor
    rest = await _json(
        await api.get(f"/api/v1/parcels?limit=2&before={cursor}", headers=courier), 200
    )
    assert [p["id"] for p in rest["parcels"]] == [seeded.parcel_id]
    assert rest["next_before"] is None
    assert await _ids(api, courier, "?state=waiting") == [seeded.parcel_id]
    assert (await api.get("/api/v1/parcels?state=lost", headers=courier)).status == 422
    assert (await api.get("/api/v1/parcels?before=x", headers=courier)).status == 422
    # what a resident sees of her parcel: company and tracking, never a code
    li = await login(api, "li")
    view = await _json(await api.get(f"/api/v1/parcels/{seeded.parcel_id}", headers=li), 200)
    assert (view["company"], view["tracking"], view["unit"]) == ("SF", "SF0000000001", "1-101")
    assert (view["state"], view["compartment"], view["fee_due_cents"]) == ("waiting", 2, 0)
    assert "code" not in view
    assert "code_n" not in view


async def test_locker_banks_show_free_compartments_and_states_to_staff_only(
    api: TestClient, login: Any, seeded: Any
) -> None:
    free = {"mini": 1, "S": 1, "M": 2, "L": 1}  # compartment 2 (S) holds the seeded parcel
    for who in ("courier", "other_courier"):
        out = await _json(await api.get("/api/v1/locker-banks", headers=await login(api, who)), 200)
        assert out == {
            "banks": [
                {
                    "id": seeded.bank_id,
                    "local_id": "A",
                    "name": "Building 1 lobby",
                    "gateway": seeded.gateway_id,
                    "site": seeded.site_id,
                    "free": free,
                    "compartments": None,
                }
            ]
        }
    for who in ("engineer", "admin"):
        out = await _json(await api.get("/api/v1/locker-banks", headers=await login(api, who)), 200)
        (bank,) = out["banks"]
        assert bank["free"] == free
        assert [(c["no"], c["size"], c["state"]) for c in bank["compartments"]] == [
            (1, "mini", "free"),
            (2, "S", "occupied"),
            (3, "M", "free"),
            (4, "L", "free"),
            (5, "S", "free"),
            (6, "M", "free"),
        ]


async def test_notifications_are_the_residents_own_newest_first(
    api: TestClient, login: Any, seeded: Any, db: Database
) -> None:
    li = await login(api, "li")
    out = await _json(await api.get("/api/v1/notifications", headers=li), 200)
    (note,) = out["notifications"]
    assert (note["kind"], note["body"]["parcel"], note["read_at"]) == (
        "parcel.waiting",
        seeded.parcel_id,
        None,
    )
    assert out["next_before"] is None
    zhang = await _json(
        await api.get("/api/v1/notifications", headers=await login(api, "zhang")), 200
    )
    assert zhang == {"notifications": [], "next_before": None, "unread": 0}
    async with db.session() as s:
        for n in range(3):
            s.add(
                Notification(
                    site_id=seeded.site_id,
                    resident_id=seeded.li_id,
                    kind="parcel.waiting",
                    body={"parcel": f"{n:032x}"},
                    created_at=now_ms(),
                )
            )
        await s.commit()
    page = await _json(await api.get("/api/v1/notifications?limit=2", headers=li), 200)
    assert [n["body"]["parcel"] for n in page["notifications"]] == [f"{2:032x}", f"{1:032x}"]
    rest = await _json(
        await api.get(f"/api/v1/notifications?limit=2&before={page['next_before']}", headers=li),
        200,
    )
    assert [n["body"]["parcel"] for n in rest["notifications"]] == [f"{0:032x}", seeded.parcel_id]


# -- nothing personal or secret reaches couriers and engineers -------------------------------------


async def test_no_name_phone_or_code_in_any_courier_or_engineer_response(
    api: TestClient, login: Any, seeded: Any, cloud_keys: Any
) -> None:
    code = derive_code(cloud_keys.gateway_code_key(seeded.gateway_id), seeded.parcel_id, 0)
    secrets = [seeded.li_name, seeded.zhang_name, seeded.li_phone, seeded.zhang_phone, code]
    texts: list[str] = []
    for who in ("courier", "other_courier", "engineer", "admin"):
        headers = await login(api, who)
        pid = seeded.parcel_id
        for path in (
            "/api/v1/locker-banks",
            "/api/v1/parcels",
            f"/api/v1/parcels/{pid}",
            f"/api/v1/parcels/{pid}/code",
            f"/api/v1/parcels/{pid}/qr.png",
            "/api/v1/notifications",
            f"/api/v1/courier/pass?gateway={seeded.gateway_id}",
        ):
            resp = await api.get(path, headers=headers)
            assert resp.content_type == "application/json", (who, path)
            texts.append(await resp.text())
        for body in (
            {"bank": seeded.bank_id, "unit": "1-101"},
            {"bank": seeded.bank_id, "phone": seeded.li_phone},
        ):
            resp = await _post(api, "/api/v1/recipients/lookup", headers, json=body)
            texts.append(await resp.text())
            resp = await _post(api, "/api/v1/parcels", headers, json={**body, "size": "S"})
            texts.append(await resp.text())
        for action in ("reopen", "cancel", "retrieve", "pickup"):
            texts.append(
                await (await _post(api, f"/api/v1/parcels/{pid}/{action}", headers)).text()
            )
    joined = "\n".join(texts)
    assert "138****8000" in joined  # the couriers did see the masked phone
    for secret in secrets:
        assert secret not in joined
    keys = set().union(*(_keys(json.loads(text)) for text in texts))
    assert keys.isdisjoint({"code", "qr_token", "code_n", "phone", "resident", "resident_id"})


def _keys(value: Any) -> set[str]:
    """Every key of a JSON document, the error object's own excepted."""
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = set()
    for key, inner in value.items():
        if key != "error":
            found |= {key} | _keys(inner)
    return found
