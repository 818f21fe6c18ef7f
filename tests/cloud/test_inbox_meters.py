"""The inbox's field-data effects: meter readings, device online/offline, device health.

Each test runs on SQLite and on PostgreSQL: the effects are dialect-specific upserts.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cloud_sync.protocol import Event, EventBatch
from cloud_sync.service.db import Database
from cloud_sync.service.inbox import MAX_HEALTH_DEVICES, MAX_READING_VALUES, Inbox
from cloud_sync.service.tables import Command, Device, GatewayEvent, Meter, MeterReading

T0 = 1_795_830_550_000


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """Both engines: a SQLite file, and PostgreSQL (the suite's usual database when running)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}"
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL is not running")
    return database_url


class Gw:
    """Builds one gateway's batches, numbering events as a gateway's outbox does."""

    def __init__(self, inbox: Inbox, gateway_id: str) -> None:
        self.inbox = inbox
        self.gateway_id = gateway_id
        self.seq = 0

    def event(self, type_: str, data: dict[str, Any], ts: int = T0) -> Event:
        self.seq += 1
        return Event(uuid.uuid4().hex, self.seq, ts, type_, data)

    async def send(self, *events: Event) -> int:
        """Store a batch; the number of new events."""
        return (await self.inbox.store(EventBatch(self.gateway_id, tuple(events)))).inserted


@pytest.fixture
async def gw(db: Database, seeded: Any, fake_clock: Any) -> Gw:
    return Gw(Inbox(db, fake_clock), seeded.gateway_id)


def reading(meter: str, read_at: int, **values: str) -> dict[str, Any]:
    return {
        "meter": meter,
        "bus": "rs485-1",
        "values": values or {"energy_kwh": "1234.56"},
        "read_at": read_at,
    }


async def _readings(db: Database, meter_id: int | None = None) -> list[MeterReading]:
    async with db.session() as s:
        stmt = select(MeterReading).order_by(MeterReading.meter_id, MeterReading.read_at)
        if meter_id is not None:
            stmt = stmt.where(MeterReading.meter_id == meter_id)
        return list((await s.execute(stmt)).scalars())


async def _meter(db: Database, gateway: str, local_id: str) -> Meter | None:
    async with db.session() as s:
        return (
            await s.execute(
                select(Meter).where(Meter.gateway_id == gateway, Meter.local_id == local_id)
            )
        ).scalar_one_or_none()


async def _device(db: Database, gateway: str, local_id: str) -> Device | None:
    async with db.session() as s:
        return (
            await s.execute(
                select(Device).where(Device.gateway_id == gateway, Device.local_id == local_id)
            )
        ).scalar_one_or_none()


async def _event_count(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(GatewayEvent))).scalar_one())


# -- meter.reading --------------------------------------------------------------------------------


async def test_a_reading_is_stored_once_however_often_it_is_delivered(
    gw: Gw, db: Database, seeded: Any
) -> None:
    first = gw.event("meter.reading", reading(seeded.meter_li_local, T0, energy_kwh="1234.56"))
    assert await gw.send(first) == 1
    assert await gw.send(first) == 0  # the same event again: a duplicate by id
    # the same reading under another event id (the gateway re-recorded it): still once
    again = gw.event("meter.reading", reading(seeded.meter_li_local, T0, energy_kwh="1234.56"))
    assert await gw.send(again) == 1
    stored = await _readings(db)
    assert [(r.meter_id, r.read_at, r.values, r.event_id) for r in stored] == [
        (seeded.meter_li_id, T0, {"energy_kwh": "1234.56"}, first.id)
    ]
    assert stored[0].site_id == seeded.site_id
    assert await _event_count(db) == 2


async def test_a_batch_of_readings_of_several_meters_goes_in_together(
    gw: Gw, db: Database, seeded: Any
) -> None:
    events = [
        gw.event("meter.reading", reading(meter, T0 + i * 60_000, energy_kwh=f"{100 + i}.5"))
        for i in range(5)
        for meter in (seeded.meter_li_local, seeded.meter_common_local)
    ]
    # a duplicate reading inside the same batch, under another event id
    events.append(gw.event("meter.reading", reading(seeded.meter_li_local, T0)))
    events.append(
        gw.event(
            "meter.reading",
            reading(seeded.meter_zhang_local, T0, volume_m3="12.345", valve="open"),
        )
    )
    assert await gw.send(*events) == 12
    assert len(await _readings(db, seeded.meter_li_id)) == 5
    assert len(await _readings(db, seeded.meter_common_id)) == 5
    [water] = await _readings(db, seeded.meter_zhang_id)
    assert water.values == {"volume_m3": "12.345", "valve": "open"}


async def test_a_reading_of_an_unknown_meter_registers_it_unassigned(
    gw: Gw, db: Database, seeded: Any
) -> None:
    data = {**reading("m-new", T0, volume_m3="3.5"), "kind": "water"}
    later = {**reading("m-new", T0 + 1000, volume_m3="3.6"), "kind": "water"}
    await gw.send(gw.event("meter.reading", data), gw.event("meter.reading", later))
    meter = await _meter(db, seeded.gateway_id, "m-new")
    assert meter is not None
    assert (meter.site_id, meter.unit_id, meter.kind, meter.name) == (
        seeded.site_id,
        None,
        "water",
        "",
    )
    assert [r.values for r in await _readings(db, meter.id)] == [
        {"volume_m3": "3.5"},
        {"volume_m3": "3.6"},
    ]
    # known from now on: a reading without a kind is stored too
    await gw.send(gw.event("meter.reading", reading("m-new", T0 + 2000, volume_m3="3.7")))
    assert len(await _readings(db, meter.id)) == 3


async def test_a_reading_of_an_unknown_meter_without_a_kind_is_kept_as_an_event_only(
    gw: Gw, db: Database, seeded: Any
) -> None:
    await gw.send(gw.event("meter.reading", reading("m-stranger", T0)))
    assert await _meter(db, seeded.gateway_id, "m-stranger") is None
    assert await _readings(db) == []
    assert await _event_count(db) == 1


async def test_readings_of_another_gateways_meter_are_not_this_gateways(
    gw: Gw, db: Database, seeded: Any, site_factory: Any, fake_clock: Any
) -> None:
    other = await site_factory(prefix="s2-", name="Other Court")
    other_gw = Gw(Inbox(db, fake_clock), other.gateway_id)
    # the same local id at another site's gateway is another meter
    await other_gw.send(other_gw.event("meter.reading", reading(seeded.meter_li_local, T0)))
    assert await _readings(db, seeded.meter_li_id) == []
    [theirs] = await _readings(db, other.meter_li_id)
    assert theirs.site_id == other.site_id


BAD_READINGS: dict[str, dict[str, Any]] = {
    "float value": {"values": {"energy_kwh": 1234.5}},
    "int value": {"values": {"energy_kwh": 1234}},
    "exponent": {"values": {"energy_kwh": "1e5"}},
    "ten decimals": {"values": {"energy_kwh": "1.0123456789"}},
    "nineteen digits": {"values": {"energy_kwh": "1234567890123456789"}},
    "NaN": {"values": {"energy_kwh": "NaN"}},
    "empty value": {"values": {"energy_kwh": ""}},
    "bad name": {"values": {"Energy": "1"}},
    "long name": {"values": {"e" * 33: "1"}},
    "no values": {"values": {}},
    "values not an object": {"values": ["1"]},
    "too many values": {"values": {f"v{i}": "1" for i in range(MAX_READING_VALUES + 1)}},
    "read_at missing": {"read_at": None},
    "read_at negative": {"read_at": -1},
    "read_at a bool": {"read_at": True},
    "read_at a string": {"read_at": "1795830550000"},
    "read_at too large": {"read_at": 1 << 53},
    "meter not an id": {"meter": "m 1"},
    "meter not a string": {"meter": 7},
    "bus missing": {"bus": None},
    "kind unknown": {"kind": "plutonium"},
}


async def test_malformed_readings_are_kept_as_events_only(
    gw: Gw, db: Database, seeded: Any
) -> None:
    # One batch: each bad reading at a time of its own, so one that got through is named below.
    cases = sorted(BAD_READINGS)
    events = []
    for i, case in enumerate(cases):
        data = {**reading(seeded.meter_li_local, T0 + 1 + i), **BAD_READINGS[case]}
        events.append(gw.event("meter.reading", {k: v for k, v in data.items() if v is not None}))
    good = gw.event("meter.reading", reading(seeded.meter_li_local, T0))
    assert await gw.send(*events, good) == len(cases) + 1
    stored = [r.read_at for r in await _readings(db)]
    assert stored == [T0], [cases[t - T0 - 1] for t in stored if t != T0]
    assert await _event_count(db) == len(cases) + 1


async def test_the_largest_valid_reading_is_stored(gw: Gw, db: Database, seeded: Any) -> None:
    values = {f"v{i}": f"-{'9' * 18}.{'9' * 9}" for i in range(MAX_READING_VALUES)}
    await gw.send(gw.event("meter.reading", reading(seeded.meter_li_local, T0, **values)))
    [stored] = await _readings(db)
    assert stored.values == values


# -- device.online --------------------------------------------------------------------------------


async def test_device_online_transitions_and_late_events(gw: Gw, db: Database, seeded: Any) -> None:
    def online(device: str, up: bool, ts: int, **extra: Any) -> Event:
        return gw.event(
            "device.online", {"device": device, "bus": "rs485-1", "online": up, **extra}, ts
        )

    await gw.send(online("m7", True, T0), online("lb1", True, T0, kind="lockboard"))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.kind, m7.bus, m7.online, m7.changed_at, m7.site_id) == (
        "meter",
        "rs485-1",
        True,
        T0,
        seeded.site_id,
    )
    assert (m7.requests, m7.stats_at) == (0, None)
    lb1 = await _device(db, seeded.gateway_id, "lb1")
    assert lb1 is not None
    assert lb1.kind == "lockboard"

    # offline then online again in one batch: the latest wins
    await gw.send(online("m7", False, T0 + 10), online("m7", True, T0 + 20))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.online, m7.changed_at) == (True, T0 + 20)

    # a batch applied out of order (an older transition): it changes nothing
    await gw.send(online("m7", False, T0 + 15))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.online, m7.changed_at) == (True, T0 + 20)

    await gw.send(online("m7", False, T0 + 30))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.online, m7.changed_at) == (False, T0 + 30)


BAD_ONLINE: list[dict[str, Any]] = [
    {"bus": "rs485-1", "online": "yes"},
    {"bus": "rs485-1", "online": 1},
    {"bus": "rs485-1", "online": None},
    {"online": True},
    {"bus": "rs485 1", "online": True},
    {"bus": "rs485-1", "online": True, "kind": "toaster"},
]


async def test_malformed_device_online_events_have_no_effect(
    gw: Gw, db: Database, seeded: Any
) -> None:
    events = [gw.event("device.online", {"device": f"m{i}", **d}) for i, d in enumerate(BAD_ONLINE)]
    events.append(gw.event("device.online", {"device": "m 7", "bus": "rs485-1", "online": True}))
    assert await gw.send(*events) == len(BAD_ONLINE) + 1
    async with db.session() as s:
        assert list((await s.execute(select(Device.local_id))).scalars()) == []


# -- device.health --------------------------------------------------------------------------------


def stats(device: str, requests: int, **extra: Any) -> dict[str, Any]:
    return {
        "device": device,
        "online": True,
        "last_seen": T0,
        "requests": requests,
        "timeouts": 1,
        "failures": 0,
        "checksum_errors": 2,
        "latency_ms": 45,
        **extra,
    }


def health(*devices: Any, bus: str = "rs485-1") -> dict[str, Any]:
    return {"bus": bus, "devices": list(devices)}


async def test_device_health_keeps_the_newest_statistics(gw: Gw, db: Database, seeded: Any) -> None:
    await gw.send(gw.event("device.health", health(stats("m7", 100), stats("m8", 5)), T0 + 100))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.kind, m7.bus, m7.online, m7.changed_at, m7.last_seen) == (
        "meter",
        "rs485-1",
        True,
        T0 + 100,
        T0,
    )
    assert (m7.requests, m7.timeouts, m7.failures, m7.checksum_errors, m7.latency_ms) == (
        100,
        1,
        0,
        2,
        45,
    )
    assert m7.stats_at == T0 + 100

    # an older snapshot applied later (another instance): ignored
    await gw.send(gw.event("device.health", health(stats("m7", 50)), T0 + 50))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.requests, m7.stats_at) == (100, T0 + 100)

    # a newer one: taken; an unknown online state (null) keeps the known one, as does last_seen
    await gw.send(
        gw.event(
            "device.health",
            health(stats("m7", 150, online=None, last_seen=None, latency_ms=None)),
            T0 + 200,
        )
    )
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.requests, m7.stats_at, m7.online, m7.last_seen, m7.latency_ms) == (
        150,
        T0 + 200,
        True,
        T0,
        None,
    )
    m8 = await _device(db, seeded.gateway_id, "m8")
    assert m8 is not None
    assert (m8.requests, m8.stats_at) == (5, T0 + 100)


async def test_device_health_and_online_events_agree_on_the_newest(
    gw: Gw, db: Database, seeded: Any
) -> None:
    def online(up: bool, ts: int) -> Event:
        return gw.event("device.online", {"device": "m7", "bus": "rs485-1", "online": up}, ts)

    # the device went offline at +300; a snapshot from +200 (still online) arrives after that
    await gw.send(online(False, T0 + 300))
    await gw.send(gw.event("device.health", health(stats("m7", 10, online=True)), T0 + 200))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.online, m7.changed_at, m7.requests) == (False, T0 + 300, 10)
    # a snapshot after the transition that sees it online again: a change at the snapshot's time
    await gw.send(gw.event("device.health", health(stats("m7", 20, online=True)), T0 + 400))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.online, m7.changed_at, m7.requests) == (True, T0 + 400, 20)
    # one that agrees with the stored state leaves changed_at alone
    await gw.send(gw.event("device.health", health(stats("m7", 30, online=True)), T0 + 500))
    m7 = await _device(db, seeded.gateway_id, "m7")
    assert m7 is not None
    assert (m7.online, m7.changed_at, m7.requests) == (True, T0 + 400, 30)


async def test_the_largest_health_snapshot_is_applied(gw: Gw, db: Database, seeded: Any) -> None:
    devices = [
        {"device": f"d{i}", "requests": i, "timeouts": 0, "failures": 0, "checksum_errors": 0}
        for i in range(MAX_HEALTH_DEVICES)
    ]
    await gw.send(gw.event("device.health", health(*devices)))
    d9 = await _device(db, seeded.gateway_id, "d9")
    assert d9 is not None
    assert (d9.requests, d9.online, d9.last_seen, d9.latency_ms) == (9, None, None, None)
    async with db.session() as s:
        count = (await s.execute(select(func.count()).select_from(Device))).scalar_one()
    assert count == MAX_HEALTH_DEVICES


async def test_malformed_health_snapshots_have_no_effect(gw: Gw, db: Database, seeded: Any) -> None:
    # Each snapshot names its own devices, so one that got through is named below.
    snapshots = [
        health(stats("a", -1)),
        health(stats("b", 1, timeouts=True)),
        health(stats("c", 1, failures=None)),
        health({k: v for k, v in stats("d", 1).items() if k != "checksum_errors"}),
        health(stats("e", 1, latency_ms=-5)),
        health(stats("f", 1, latency_ms=1 << 31)),
        health(stats("g", 1, online="yes")),
        health(stats("h", 1, last_seen=-1)),
        health(stats("i", 1, kind="toaster")),
        health(stats("j", 1), stats("j", 2)),  # one device twice
        health(stats("k", 1), "m8"),
        health(stats("l 1", 1)),
        {"bus": "rs485-1", "devices": {"m": stats("m", 1)}},
        {"devices": [stats("n", 1)]},
        health(stats("o", 1), bus="rs485 1"),
        # (built directly, not decoded: the inbox bounds a snapshot without the wire's limits)
        health(*[stats(f"p{i}", 1) for i in range(MAX_HEALTH_DEVICES + 1)]),
    ]
    assert await gw.send(*(gw.event("device.health", h) for h in snapshots)) == len(snapshots)
    async with db.session() as s:
        assert list((await s.execute(select(Device.local_id))).scalars()) == []


# -- command.status completed ---------------------------------------------------------------------


@pytest.mark.parametrize("steps", [["acknowledged", "completed"], ["completed"]])
async def test_a_meter_read_command_completes(
    gw: Gw, db: Database, seeded: Any, steps: list[str]
) -> None:
    cid = uuid.uuid4().hex
    async with db.session() as s:
        s.add(
            Command(
                id=cid,
                site_id=seeded.site_id,
                gateway_id=seeded.gateway_id,
                target=seeded.meter_li_local,
                meter_id=seeded.meter_li_id,
                account_id=seeded.logins["li"].account_id,
                action="meter.read",
                seq=1,
                status="sent",
                issued_at=T0,
                expires_at=T0 + 30_000,
                updated_at=T0,
            )
        )
        await s.commit()
    applied = await gw.inbox.store(
        EventBatch(
            seeded.gateway_id,
            tuple(
                gw.event("command.status", {"command": cid, "status": status}) for status in steps
            ),
        )
    )
    assert applied.changed_commands[cid].status == "completed"
    async with db.session() as s:
        command = await s.get(Command, cid)
    assert command is not None
    assert command.status == "completed"
