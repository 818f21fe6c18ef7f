"""Story 3, first half: meters on simulated RS-485 lines are read on schedule, and every reading
reaches the cloud exactly once (the cloud's inbox, keyed by event id and gateway seq).

The community runs its three lines: six DL/T 645 electricity meters, four Modbus RTU water meters
(register map ``water``) and a lock board. Its meters were registered with the cloud at seeding,
each in its unit, under the ids the gateway reads them by.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text

from cloud_sync.service.db import Database
from courtyard.community import Community
from courtyard.seed import default_plan

ELECTRICITY_VALUES = {"energy_kwh", "voltage_v", "power_kw"}
WATER_VALUES = {"volume_m3", "flow_m3h", "valve"}


async def _query(url: str, sql: str, **params: Any) -> list[Any]:
    db = Database(url)
    try:
        async with db.session() as session:
            return list((await session.execute(text(sql), params)).all())
    finally:
        await db.dispose()


async def _events(url: str, gateway: str) -> list[dict[str, Any]]:
    rows = await _query(
        url,
        "SELECT type, data FROM gateway_events WHERE gateway_id = :gw"
        " AND type IN ('meter.reading', 'device.online') ORDER BY seq",
        gw=gateway,
    )
    return [{"type": t, "data": d} for t, d in rows]


async def test_scheduled_meter_readings_reach_the_cloud_once(
    broker: Any, database_url: str, tmp_path: Path
) -> None:
    gateway_id = f"gw-{uuid.uuid4().hex[:8]}"
    c = Community(
        tmp_path / "c",
        broker_host=broker.host,
        broker_port=broker.port,
        broker_protocol=broker.protocol,
        database_url=database_url,
        fast_passwords=True,
        isolate_topics=True,
        gateway_id=gateway_id,
        rs485=True,
        meter_interval_s=0.2,
    )
    await c.start()
    try:
        configured = {m.id: m for m in c.gateway_settings().meters}
        assert len(configured) == 10
        kinds = Counter(m.effective_kind for m in configured.values())
        assert kinds == {"electricity": 6, "water": 4}
        async with asyncio.timeout(60):
            while True:
                events = await _events(database_url, gateway_id)
                per_meter = Counter(
                    e["data"]["meter"] for e in events if e["type"] == "meter.reading"
                )
                if set(per_meter) == set(configured) and min(per_meter.values()) >= 3:
                    break
                await asyncio.sleep(0.1)
    finally:
        await c.stop()
    events = await _events(database_url, gateway_id)
    readings = [e["data"] for e in events if e["type"] == "meter.reading"]
    keys = Counter((r["meter"], r["read_at"]) for r in readings)
    assert max(keys.values()) == 1  # exactly once: no reading stored twice
    for r in readings:
        meter = configured[r["meter"]]
        assert r["kind"] == meter.effective_kind
        if meter.bus == "meters-1":
            assert set(r["values"]) == ELECTRICITY_VALUES
            assert Decimal(r["values"]["energy_kwh"]) >= 1000
        else:
            # The water map: a litre counter read in m³, a float flow rate, the valve register.
            assert meter.bus == "water-1"
            unit = int(meter.address)
            assert set(r["values"]) == WATER_VALUES
            assert Decimal(r["values"]["volume_m3"]) >= 10 + Decimal("3.5") * unit
            assert Decimal(r["values"]["flow_m3h"]) == Decimal("0.6") + Decimal("0.3") * unit
            assert r["values"]["valve"] == "open"
    # Water volumes only ever grow (the valves are open).
    for meter_id in (m for m in configured if m.startswith("wm-")):
        volumes = [Decimal(r["values"]["volume_m3"]) for r in readings if r["meter"] == meter_id]
        assert volumes == sorted(volumes)
    online = [e["data"] for e in events if e["type"] == "device.online"]
    assert {d["device"] for d in online if d["online"]} >= set(configured)
    assert {(d["device"], d["kind"]) for d in online} >= {(m, "meter") for m in configured}

    # Seeding registered exactly these meters, each in its unit (or in none).
    rows = await _query(
        database_url,
        "SELECT m.local_id, m.kind, u.label, m.name FROM meters m"
        " LEFT JOIN units u ON u.id = m.unit_id WHERE m.gateway_id = :gw",
        gw=gateway_id,
    )
    seeded = {local_id: (kind, label, name) for local_id, kind, label, name in rows}
    assert seeded == {m.local_id: (m.kind, m.unit, m.name) for m in default_plan().meters}
    assert set(seeded) == set(configured)
    assert all(seeded[m.id][0] == m.effective_kind for m in configured.values())
    households = {r.unit for r in default_plan().residents}
    for unit in households:
        assert {kind for kind, label, _ in seeded.values() if label == unit} == {
            "electricity",
            "water",
        }
