"""Meters over the API: the list, a meter's series, on-demand reads, and field-device health.

Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from cloud_sync.protocol import Event, EventBatch
from cloud_sync.service import provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.inbox import Inbox
from cloud_sync.service.provisioning import AlreadyExists, InvalidInput
from cloud_sync.service.tables import AuditRecord, Command, Meter

T0 = 1_795_830_550_000
MINUTE = 60_000


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """Both engines: a SQLite file, and PostgreSQL (the suite's usual database when running)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meters.db'}"
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL is not running")
    return database_url


class Feed:
    """Stores events of the seeded gateway straight into the inbox (no broker in between)."""

    def __init__(self, db: Database, gateway_id: str, clock: Any) -> None:
        self.inbox = Inbox(db, clock)
        self.gateway_id = gateway_id
        self.seq = 0

    async def send(self, *items: tuple[str, dict[str, Any]], ts: int = T0) -> None:
        events = []
        for type_, data in items:
            self.seq += 1
            events.append(Event(uuid.uuid4().hex, self.seq, ts, type_, data))
        await self.inbox.store(EventBatch(self.gateway_id, tuple(events)))

    async def readings(self, meter: str, times: list[int], **values: str) -> None:
        await self.send(
            *(
                (
                    "meter.reading",
                    {
                        "meter": meter,
                        "bus": "rs485-1",
                        "values": values or {"energy_kwh": f"{(t - T0) // MINUTE}.5"},
                        "read_at": t,
                    },
                )
                for t in times
            )
        )


@pytest.fixture
def feed(db: Database, seeded: Any, fake_clock: Any) -> Feed:
    return Feed(db, seeded.gateway_id, fake_clock)


async def _get(api: TestClient, path: str, headers: dict[str, str], status: int = 200) -> Any:
    resp = await api.get(path, headers=headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


# -- provisioning --------------------------------------------------------------------------------


async def test_create_meter_validates_like_create_door(
    db: Database, seeded: Any, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    sid, gw = seeded.site_id, seeded.gateway_id
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"local_id": "m 1"}, InvalidInput, "local_id"),
        ({"local_id": ""}, InvalidInput, "local_id"),
        ({"local_id": "m" * 65}, InvalidInput, "local_id"),
        ({"kind": "plutonium"}, InvalidInput, "kind"),
        ({"gateway_id": other.gateway_id}, InvalidInput, "gateway_id"),
        ({"gateway_id": "gw-nowhere"}, InvalidInput, "gateway_id"),
        ({"unit_id": other.unit1_id}, InvalidInput, "unit_id"),
        ({"name": "x" * 101}, InvalidInput, "name"),
        ({"local_id": seeded.meter_li_local}, AlreadyExists, "local_id"),
    ]
    for override, error, field in bad:
        args: dict[str, Any] = {"gateway_id": gw, "local_id": "m-new", "kind": "water"}
        args.update(override)
        async with db.session() as s:
            with pytest.raises(error) as caught:
                await provisioning.create_meter(
                    s,
                    sid,
                    args["gateway_id"],
                    args["local_id"],
                    args["kind"],
                    unit_id=args.get("unit_id"),
                    name=args.get("name", ""),
                )
            assert caught.value.field == field, override
    async with db.session() as s:
        meter = await provisioning.create_meter(
            s, sid, gw, "m-" + "9" * 62, "heat", unit_id=seeded.unit2_id, name=" Heat 2-101 "
        )
        await s.commit()
    assert (meter.kind, meter.unit_id, meter.name, meter.site_id) == (
        "heat",
        seeded.unit2_id,
        "Heat 2-101",
        sid,
    )


async def test_assigning_a_meter_moves_who_may_read_it(
    api: TestClient, login: Any, db: Database, seeded: Any, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    async with db.session() as s:
        with pytest.raises(InvalidInput):
            await provisioning.assign_meter(s, seeded.site_id, seeded.meter_li_id, other.unit1_id)
        with pytest.raises(InvalidInput):
            await provisioning.assign_meter(s, other.site_id, seeded.meter_li_id, None)
    async with db.session() as s:
        await provisioning.assign_meter(
            s, seeded.site_id, seeded.meter_common_id, seeded.unit1_id, actor="account:1"
        )
        await provisioning.assign_meter(s, seeded.site_id, seeded.meter_li_id, None)
        await s.commit()
    li = await _get(api, "/api/v1/meters", await login(api, "li"))
    assert [m["id"] for m in li["meters"]] == [seeded.meter_common_id]
    async with db.session() as s:
        meter = await s.get(Meter, seeded.meter_li_id)
        records = list(
            (
                await s.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action == "meter.assign")
                    .order_by(AuditRecord.seq)
                )
            ).scalars()
        )
    assert meter is not None
    assert meter.unit_id is None
    assert [(r.actor, r.object) for r in records] == [
        ("account:1", f"meter:{seeded.meter_common_id}"),
        ("system", f"meter:{seeded.meter_li_id}"),
    ]


# -- the list ------------------------------------------------------------------------------------


async def test_the_list_shows_each_caller_the_meters_it_may_read_with_the_latest_reading(
    api: TestClient, login: Any, seeded: Any, feed: Feed
) -> None:
    await feed.readings(seeded.meter_li_local, [T0, T0 + 2 * MINUTE, T0 + MINUTE])
    await feed.readings(seeded.meter_zhang_local, [T0], volume_m3="12.5", valve="open")

    li = await _get(api, "/api/v1/meters", await login(api, "li"))
    assert li == {
        "meters": [
            {
                "id": seeded.meter_li_id,
                "name": "",
                "kind": "electricity",
                "unit": seeded.unit1_label,
                "gateway": seeded.gateway_id,
                "latest": {"read_at": T0 + 2 * MINUTE, "values": {"energy_kwh": "2.5"}},
            }
        ],
        "next_after": None,
    }
    zhang = await _get(api, "/api/v1/meters", await login(api, "zhang"))
    assert [(m["id"], m["unit"], m["latest"]) for m in zhang["meters"]] == [
        (
            seeded.meter_zhang_id,
            seeded.unit2_label,
            {"read_at": T0, "values": {"volume_m3": "12.5", "valve": "open"}},
        )
    ]
    for staff in ("engineer", "admin"):
        body = await _get(api, "/api/v1/meters", await login(api, staff))
        assert [(m["id"], m["unit"], m["latest"] is None) for m in body["meters"]] == [
            (seeded.meter_li_id, seeded.unit1_label, False),
            (seeded.meter_zhang_id, seeded.unit2_label, False),
            (seeded.meter_common_id, None, True),
        ]


async def test_the_list_pages_by_meter_id(api: TestClient, login: Any, seeded: Any) -> None:
    headers = await login(api, "engineer")
    first = await _get(api, "/api/v1/meters?limit=2", headers)
    assert [m["id"] for m in first["meters"]] == [seeded.meter_li_id, seeded.meter_zhang_id]
    assert first["next_after"] == seeded.meter_zhang_id
    rest = await _get(api, f"/api/v1/meters?limit=2&after={first['next_after']}", headers)
    assert [m["id"] for m in rest["meters"]] == [seeded.meter_common_id]
    assert rest["next_after"] is None
    for bad in ("limit=0", "limit=1001", "after=-1", "after=x"):
        await _get(api, f"/api/v1/meters?{bad}", headers, 422)


# -- the series ----------------------------------------------------------------------------------


async def test_the_series_pages_newest_first(
    api: TestClient, login: Any, seeded: Any, feed: Feed
) -> None:
    times = [T0 + i * MINUTE for i in range(250)]
    await feed.readings(seeded.meter_li_local, times)
    await feed.readings(seeded.meter_common_local, [T0 + 5])  # another meter: never in Li's series
    headers = await login(api, "li")
    path = f"/api/v1/meters/{seeded.meter_li_id}/readings"

    seen: list[int] = []
    page = await _get(api, path, headers)
    assert page["meter"] == seeded.meter_li_id
    assert len(page["readings"]) == 100  # the default limit
    while True:
        seen += [r["read_at"] for r in page["readings"]]
        if page["next_before"] is None:
            break
        assert page["next_before"] == page["readings"][-1]["read_at"]
        page = await _get(api, f"{path}?before={page['next_before']}", headers)
    assert seen == sorted(times, reverse=True)
    assert page["readings"][-1] == {"read_at": T0, "values": {"energy_kwh": "0.5"}}

    # a window: since inclusive, until exclusive; limit and paging inside it
    window = await _get(api, f"{path}?since={times[10]}&until={times[20]}&limit=4", headers)
    assert [r["read_at"] for r in window["readings"]] == times[19:15:-1]
    assert window["next_before"] == times[16]
    tail = await _get(
        api, f"{path}?since={times[10]}&until={times[20]}&before={times[12]}", headers
    )
    assert [r["read_at"] for r in tail["readings"]] == [times[11], times[10]]
    assert tail["next_before"] is None
    # exactly `limit` left: no next page announced
    exact = await _get(api, f"{path}?since={times[240]}&limit=10", headers)
    assert len(exact["readings"]) == 10
    assert exact["next_before"] is None
    empty = await _get(api, f"{path}?since={times[-1] + 1}", headers)
    assert empty == {"meter": seeded.meter_li_id, "readings": [], "next_before": None}
    for bad in ("limit=0", "limit=1001", "since=-1", f"until={1 << 53}", "before=soon"):
        await _get(api, f"{path}?{bad}", headers, 422)


async def test_staff_read_any_series_of_their_site_and_nobody_another_sites(
    api: TestClient, login: Any, seeded: Any, feed: Feed, site_factory: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    await feed.readings(seeded.meter_common_local, [T0])
    engineer = await login(api, "engineer")
    body = await _get(api, f"/api/v1/meters/{seeded.meter_common_id}/readings", engineer)
    assert [r["read_at"] for r in body["readings"]] == [T0]
    await _get(api, f"/api/v1/meters/{other.meter_li_id}/readings", engineer, 404)
    li = await login(api, "li")
    await _get(api, f"/api/v1/meters/{seeded.meter_common_id}/readings", li, 404)
    await _get(api, f"/api/v1/meters/{seeded.meter_zhang_id}/readings", li, 404)
    await _get(api, "/api/v1/meters/99999999999/readings", li, 404)


# -- on-demand read ------------------------------------------------------------------------------


async def test_a_resident_reads_her_meter_now(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any, db: Database, cloud_keys: Any
) -> None:
    headers = await login(api, "li")
    resp = await api.post(f"/api/v1/meters/{seeded.meter_li_id}/read", headers=headers)
    assert resp.status == 202, await resp.text()
    accepted = await resp.json()
    assert accepted["status"] == "sent"
    cid = accepted["command_id"]

    body = await fake_gateway.command()
    assert (body.id, body.gateway, body.target, body.action, body.args) == (
        cid,
        seeded.gateway_id,
        seeded.meter_li_local,
        "meter.read",
        {},
    )
    assert body.actor == f"account:{seeded.logins['li'].account_id}"
    assert body.kid == cloud_keys.signing.kid
    assert 0 < body.expires_at - body.issued_at <= 60_000

    read_at = time.time_ns() // 1_000_000
    await fake_gateway.send(
        fake_gateway.event("command.status", {"command": cid, "status": "acknowledged"}),
        fake_gateway.event(
            "meter.reading",
            {
                "meter": seeded.meter_li_local,
                "bus": "rs485-1",
                "values": {"energy_kwh": "77.25"},
                "read_at": read_at,
            },
        ),
        fake_gateway.event("command.status", {"command": cid, "status": "completed"}),
    )
    view = await _get(api, f"/api/v1/commands/{cid}", headers)
    assert view["status"] == "completed"
    assert view["meter"] == seeded.meter_li_id
    assert "door" not in view
    listed = await _get(api, "/api/v1/meters", headers)
    assert listed["meters"][0]["latest"] == {"read_at": read_at, "values": {"energy_kwh": "77.25"}}

    async with db.session() as s:
        command = await s.get(Command, cid)
        records = list(
            (
                await s.execute(select(AuditRecord).where(AuditRecord.action == "meter.read"))
            ).scalars()
        )
    assert command is not None
    assert (command.target, command.meter_id, command.door_id) == (
        seeded.meter_li_local,
        seeded.meter_li_id,
        None,
    )
    assert [(r.actor, r.object) for r in records] == [
        (f"account:{seeded.logins['li'].account_id}", f"meter:{seeded.meter_li_id}")
    ]


async def test_a_retried_read_is_one_command_and_a_reused_key_elsewhere_is_a_conflict(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    headers = {**await login(api, "engineer"), "Idempotency-Key": "read-1"}
    first = await api.post(f"/api/v1/meters/{seeded.meter_common_id}/read", headers=headers)
    again = await api.post(f"/api/v1/meters/{seeded.meter_common_id}/read", headers=headers)
    assert first.status == again.status == 202
    cid = (await first.json())["command_id"]
    assert (await again.json())["command_id"] == cid
    assert (await fake_gateway.command()).id == cid
    assert fake_gateway.raw_commands.empty()  # published once

    elsewhere = await api.post(f"/api/v1/meters/{seeded.meter_li_id}/read", headers=headers)
    assert elsewhere.status == 409
    assert (await elsewhere.json())["error"]["code"] == "idempotency_conflict"
    door = await api.post(
        f"/api/v1/doors/{seeded.door_b1_id}/unlock", headers=headers, json={"reason": "test it"}
    )
    assert door.status == 409
    bad_key = {**headers, "Idempotency-Key": "has space"}
    resp = await api.post(f"/api/v1/meters/{seeded.meter_common_id}/read", headers=bad_key)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid_header"


# -- devices -------------------------------------------------------------------------------------


async def test_engineers_see_the_sites_devices(
    api: TestClient, login: Any, seeded: Any, feed: Feed
) -> None:
    await feed.send(
        ("device.online", {"device": "m7", "bus": "rs485-1", "online": False}),
        ("device.online", {"device": "lb1", "bus": "rs485-2", "online": True, "kind": "lockboard"}),
        ts=T0,
    )
    await feed.send(
        (
            "device.health",
            {
                "bus": "rs485-1",
                "devices": [
                    {
                        "device": "m8",
                        "online": True,
                        "last_seen": T0 + 50,
                        "requests": 10,
                        "timeouts": 1,
                        "failures": 0,
                        "checksum_errors": 2,
                        "latency_ms": 41,
                    }
                ],
            },
        ),
        ts=T0 + 100,
    )
    headers = await login(api, "engineer")
    body = await _get(api, "/api/v1/devices", headers)
    assert body["next_after"] is None
    assert body["devices"] == [
        {
            "gateway": seeded.gateway_id,
            "id": "m7",
            "kind": "meter",
            "bus": "rs485-1",
            "online": False,
            "changed_at": T0,
            "last_seen": None,
            "requests": 0,
            "timeouts": 0,
            "failures": 0,
            "checksum_errors": 0,
            "latency_ms": None,
            "stats_at": None,
        },
        {
            "gateway": seeded.gateway_id,
            "id": "lb1",
            "kind": "lockboard",
            "bus": "rs485-2",
            "online": True,
            "changed_at": T0,
            "last_seen": None,
            "requests": 0,
            "timeouts": 0,
            "failures": 0,
            "checksum_errors": 0,
            "latency_ms": None,
            "stats_at": None,
        },
        {
            "gateway": seeded.gateway_id,
            "id": "m8",
            "kind": "meter",
            "bus": "rs485-1",
            "online": True,
            "changed_at": T0 + 100,
            "last_seen": T0 + 50,
            "requests": 10,
            "timeouts": 1,
            "failures": 0,
            "checksum_errors": 2,
            "latency_ms": 41,
            "stats_at": T0 + 100,
        },
    ]

    async def ids(query: str) -> list[str]:
        return [d["id"] for d in (await _get(api, f"/api/v1/devices?{query}", headers))["devices"]]

    assert await ids("online=false") == ["m7"]
    assert await ids("online=true") == ["lb1", "m8"]
    assert await ids(f"gateway={seeded.gateway_id}") == ["m7", "lb1", "m8"]
    assert await ids("gateway=gw-elsewhere") == []
    page = await _get(api, "/api/v1/devices?limit=2", headers)
    assert [d["id"] for d in page["devices"]] == ["m7", "lb1"]
    assert await ids(f"after={page['next_after']}") == ["m8"]
    for bad in ("online=maybe", "gateway=a%20b", "limit=0", "limit=1001"):
        await _get(api, f"/api/v1/devices?{bad}", headers, 422)
    # residents see no devices at all
    await _get(api, "/api/v1/devices", await login(api, "li"), 404)
