"""The demo community's meters: the ids the gateway reads are the ids seeded in the cloud, and
meters are registered only when the RS-485 lines that read them run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cloud_sync.service.db import Database
from courtyard.community import Community
from courtyard.seed import (
    DEMO_ELECTRICITY_METERS,
    DEMO_WATER_METERS,
    MeterPlan,
    default_plan,
    electricity_meter_id,
    water_meter_id,
)
from courtyard.simulate import dlt645_devices, modbus_devices


def test_the_plan_names_the_meters_the_simulated_lines_serve() -> None:
    plan = default_plan()
    electricity = [m.local_id for m in plan.meters if m.kind == "electricity"]
    water = [m.local_id for m in plan.meters if m.kind == "water"]
    assert electricity == [
        electricity_meter_id(int(d.address)) for d in dlt645_devices(DEMO_ELECTRICITY_METERS)
    ]
    assert water == [water_meter_id(m.unit_id) for m in modbus_devices(DEMO_WATER_METERS, "water")]
    assert electricity[0] == "em-0001"
    assert water[0] == "wm-01"
    # Each household has an electricity and a water meter; some meters belong to no unit.
    for unit in {r.unit for r in plan.residents}:
        assert sorted(m.kind for m in plan.meters if m.unit == unit) == ["electricity", "water"]
    assert any(m.unit is None for m in plan.meters)


def test_the_building_of_a_unit_to_create() -> None:
    assert MeterPlan("em-1", "electricity", "1-202").building_of_unit() == 1
    assert MeterPlan("em-1", "electricity", "A-1", building=2).building_of_unit() == 2
    with pytest.raises(ValueError, match="give the building"):
        MeterPlan("em-1", "electricity", "villa").building_of_unit()


async def _count(url: str, sql: str) -> int:
    db = Database(url)
    try:
        async with db.session() as session:
            return int((await session.execute(text(sql))).scalar_one())
    finally:
        await db.dispose()


async def test_without_rs485_no_meters_are_registered(broker: Any, tmp_path: Path) -> None:
    community = Community(
        tmp_path / "c",
        broker_host=broker.host,
        broker_port=broker.port,
        broker_protocol=broker.protocol,
        fast_passwords=True,
        isolate_topics=True,
    )
    async with community:
        assert community.plan.meters  # the plan has them …
        assert community.gateway_settings().meters == []
        assert community.buses == {}
    url = community.database_url
    assert await _count(url, "SELECT count(*) FROM meters") == 0  # … but nothing reads them
    # The vacant unit exists only for its meter, so it was not created either.
    assert await _count(url, "SELECT count(*) FROM units WHERE label = '1-202'") == 0
    assert await _count(url, "SELECT count(*) FROM units") == 3
