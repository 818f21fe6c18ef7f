"""Ingest over the real broker: inbox, duplicates, gaps, effects, acks, hostile input."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from cloud_sync.protocol import Event, EventBatch
from cloud_sync.service.state import INGESTOR
from cloud_sync.service.tables import Alarm, Door, Gateway, GatewayEvent


async def _count_events(db: Any, gateway: str) -> int:
    async with db.session() as s:
        return int(
            (
                await s.execute(
                    select(func.count())
                    .select_from(GatewayEvent)
                    .where(GatewayEvent.gateway_id == gateway)
                )
            ).scalar_one()
        )


async def _alarms(db: Any, kind: str | None = None) -> list[Alarm]:
    async with db.session() as s:
        stmt = select(Alarm).order_by(Alarm.id)
        if kind is not None:
            stmt = stmt.where(Alarm.kind == kind)
        return list((await s.execute(stmt)).scalars())


async def test_duplicates_are_stored_once_and_acknowledged_every_time(
    api: TestClient, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    events = [fake_gateway.event("gateway.started", {"version": "1.0"}) for _ in range(3)]
    first = await fake_gateway.send(*events)
    again = await fake_gateway.send(*events)
    assert first.ranges == again.ranges == ((1, 3),)
    assert await _count_events(db, seeded.gateway_id) == 3
    # the same event ids re-sent inside a larger batch: only the new one counts
    more = fake_gateway.event("gateway.started", {"version": "1.0"})
    ack = await fake_gateway.send(*events, more)
    assert ack.ranges == ((1, 4),)
    assert await _count_events(db, seeded.gateway_id) == 4
    stats = api.app[INGESTOR].stats
    assert stats.events == 4
    assert stats.duplicates >= 6
    async with db.session() as s:
        gw = await s.get(Gateway, seeded.gateway_id)
    assert gw is not None
    assert gw.last_event_seq == 4
    assert gw.last_seen is not None
    assert await _alarms(db, "sequence_gap") == []


async def test_a_gap_raises_an_alarm_naming_the_missing_range_and_clears_when_filled(
    api: TestClient, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    e1 = fake_gateway.event("gateway.started", {"version": "1"}, seq=1)
    await fake_gateway.send(e1)
    e5 = fake_gateway.event("gateway.started", {"version": "1"}, seq=5)
    e9 = fake_gateway.event("gateway.started", {"version": "1"}, seq=9)
    ack = await fake_gateway.send(e5, e9)
    assert ack.ranges == ((5, 5), (9, 9))
    gaps = await _alarms(db, "sequence_gap")
    assert [(a.detail["from"], a.detail["to"]) for a in gaps] == [(2, 4), (6, 8)]
    assert all(a.gateway_id == seeded.gateway_id and a.cleared_at is None for a in gaps)
    async with db.session() as s:
        gw = await s.get(Gateway, seeded.gateway_id)
    assert gw is not None
    assert gw.last_event_seq == 9
    # the missing events arrive late (another instance, a resend): the first gap closes
    late = [fake_gateway.event("gateway.started", {"version": "1"}, seq=s) for s in (2, 3, 4)]
    await fake_gateway.send(*late)
    gaps = await _alarms(db, "sequence_gap")
    assert [(a.detail["from"], a.cleared_at is not None) for a in gaps] == [(2, True), (6, False)]
    async with db.session() as s:
        gw = await s.get(Gateway, seeded.gateway_id)
    assert gw is not None
    assert gw.last_event_seq == 9


async def test_door_online_and_door_alarms(
    api: TestClient, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    await fake_gateway.send(
        fake_gateway.event("door.online", {"door": seeded.door_b1_local, "online": True}),
        fake_gateway.event("door.online", {"door": seeded.door_b2_local, "online": True}),
        fake_gateway.event("door.online", {"door": seeded.door_b2_local, "online": False}),
        fake_gateway.event(
            "door.event",
            {"door": seeded.door_b1_local, "kind": "forced_open", "device_seq": 7, "boot": 1},
        ),
        fake_gateway.event(
            "door.event",
            {"door": seeded.door_b1_local, "kind": "opened", "device_seq": 8, "boot": 1},
        ),
        fake_gateway.event("gateway.alarm", {"kind": "bus_crc_errors", "bus": "rs485-1"}),
        fake_gateway.event("gateway.alarm", {"kind": "sequence_gap", "from": 1, "to": 1}),
        fake_gateway.event("door.online", {"door": 42, "online": "yes"}),  # hostile shape
    )
    async with db.session() as s:
        b1 = await s.get(Door, seeded.door_b1_id)
        b2 = await s.get(Door, seeded.door_b2_id)
    assert b1 is not None
    assert b1.online is True
    assert b2 is not None
    assert b2.online is False
    kinds = [(a.kind, a.detail.get("door")) for a in await _alarms(db)]
    assert kinds == [
        ("forced_open", seeded.door_b1_local),
        ("bus_crc_errors", None),
        ("gateway.sequence_gap", None),  # the cloud's own kinds cannot be forged
    ]
    assert await _count_events(db, seeded.gateway_id) == 8


async def test_malformed_batches_are_counted_acked_and_never_stall_the_loop(
    api: TestClient, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "1"}))
    ingestor = api.app[INGESTOR]
    before = ingestor.stats.malformed
    for payload in (
        b"",
        b"garbage",
        b'{"v": 1, "gw": "x", "events": []}',
        b'{"v": 2}',
        b'{"v": 1, "gw": "' + seeded.gateway_id.encode() + b'", "events": [{"id": 1}]}',
        b"[" * 10_000,
        b"{" + b'"a":1,' * 10 + b'"a":2}',
    ):
        await fake_gateway.publish_raw(payload)
    ack = await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "2"}))
    assert ack.ranges == ((2, 2),)
    assert ingestor.stats.malformed - before == 7
    assert await _count_events(db, seeded.gateway_id) == 2


async def test_a_batch_naming_another_gateway_is_dropped_with_an_alarm(
    api: TestClient, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "1"}))
    forged = EventBatch(
        "gw-elsewhere",
        (Event(uuid.uuid4().hex, 1, 1, "door.online", {"door": "x", "online": True}),),
    )
    await fake_gateway.publish_raw(forged.encode())
    await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "1"}))
    alarms = await _alarms(db, "gateway_mismatch")
    assert len(alarms) == 1
    assert alarms[0].detail == {"topic_gateway": seeded.gateway_id, "batch_gateway": "gw-elsewhere"}
    assert await _count_events(db, seeded.gateway_id) == 2


async def test_unknown_gateways_are_dropped_without_an_ack(
    api: TestClient, seeded: Any, fake_gateway_factory: Any, fake_gateway: Any, db: Any
) -> None:
    await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "1"}))
    stranger = await fake_gateway_factory("gw-stranger")
    await stranger.publish_raw(
        EventBatch("gw-stranger", (stranger.event("gateway.started", {"version": "1"}),)).encode()
    )
    # ingest is sequential: once a later batch is acked, the stranger's was handled
    await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "1"}))
    assert api.app[INGESTOR].stats.dropped == 1
    assert stranger.acks.empty()
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(GatewayEvent))).scalar_one() == 2


async def test_retained_status_updates_the_gateway(
    api: TestClient, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    topic = fake_gateway.topics.up_status
    try:
        await fake_gateway.link.publish(topic, b'{"online": true}', qos=1, retain=True)
        await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "1"}))
        # the status and the batch arrive on one connection, in order: status handled first
        async with db.session() as s:
            gw = await s.get(Gateway, seeded.gateway_id)
        assert gw is not None
        assert gw.online is True
        assert gw.last_seen is not None
        await fake_gateway.link.publish(topic, b"offline", qos=1, retain=True)
        await fake_gateway.send(fake_gateway.event("gateway.started", {"version": "1"}))
        async with db.session() as s:
            gw = await s.get(Gateway, seeded.gateway_id)
        assert gw is not None
        assert gw.online is False
        engineer_view = await api.get(
            "/api/v1/gateways",
            headers={"Authorization": "Bearer " + await _token(api, seeded, "engineer")},
        )
        listed = (await engineer_view.json())["gateways"]
        assert listed[0]["id"] == seeded.gateway_id
        assert listed[0]["online"] is False
        assert listed[0]["last_event_seq"] == 2
    finally:
        await fake_gateway.link.publish(topic, b"", qos=1, retain=True)  # leave the broker clean


async def _token(api: TestClient, seeded: Any, who: str) -> str:
    account = seeded.logins[who]
    resp = await api.post(
        "/api/v1/sessions", json={"login": account.login, "password": account.password}
    )
    return str((await resp.json())["token"])


async def test_a_large_batch_goes_in_one_transaction(
    api: TestClient, seeded: Any, fake_gateway: Any, db: Any
) -> None:
    events = [fake_gateway.event("meter.reading", {"meter": f"m{i}", "wh": i}) for i in range(1000)]
    ack = await fake_gateway.send(*events)
    assert ack.ranges == ((1, 1000),)
    assert await _count_events(db, seeded.gateway_id) == 1000
