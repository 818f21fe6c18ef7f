"""Story 3, first half: meters on a simulated RS-485 line are read on schedule, and every
reading reaches the cloud exactly once (the cloud's inbox, keyed by event id and gateway seq)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import text

from cloud_sync.service.db import Database
from courtyard.community import Community


async def _readings(url: str, gateway: str) -> list[dict[str, Any]]:
    db = Database(url)
    try:
        async with db.session() as session:
            rows = await session.execute(
                text(
                    "SELECT type, data FROM gateway_events WHERE gateway_id = :gw"
                    " AND type IN ('meter.reading', 'device.online') ORDER BY seq"
                ),
                {"gw": gateway},
            )
            return [{"type": t, "data": d} for t, d in rows.all()]
    finally:
        await db.dispose()


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
        meters = {m.id for m in c.gateway_settings().meters}
        assert len(meters) == 6
        async with asyncio.timeout(60):
            while True:
                events = await _readings(database_url, gateway_id)
                per_meter = Counter(
                    e["data"]["meter"] for e in events if e["type"] == "meter.reading"
                )
                if set(per_meter) == meters and min(per_meter.values()) >= 3:
                    break
                await asyncio.sleep(0.1)
    finally:
        await c.stop()
    events = await _readings(database_url, gateway_id)
    readings = [e["data"] for e in events if e["type"] == "meter.reading"]
    keys = Counter((r["meter"], r["read_at"]) for r in readings)
    assert max(keys.values()) == 1  # exactly once: no reading stored twice
    for r in readings:
        assert set(r["values"]) == {"energy_kwh", "voltage_v", "power_kw"}
        assert float(r["values"]["energy_kwh"]) >= 1000
    online = [e["data"] for e in events if e["type"] == "device.online"]
    assert {d["device"] for d in online if d["online"]} >= meters
