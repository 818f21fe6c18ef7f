"""Story 7, at rest: copying either database file teaches nobody a resident's name or phone."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp

from courtyard.community import Community
from tests.e2e.conftest import Api


def _needles(name: str, phone: str) -> list[bytes]:
    out = [phone.encode(), f"+86{phone}".encode(), phone[-8:].encode()]
    for enc in ("utf-8", "utf-16-le", "utf-16-be", "gb18030"):
        out.append(name.encode(enc))
    return out


def _raw(paths: list[Path]) -> bytes:
    return b"".join(p.read_bytes() for p in paths if p.exists())


async def test_no_name_or_phone_in_either_database_file(broker: Any, tmp_path: Path) -> None:
    c = Community(
        tmp_path / "c",
        broker_host=broker.host,
        broker_port=broker.port,
        broker_protocol=broker.protocol,
        fast_passwords=True,
        isolate_topics=True,
        gateway_id=f"gw-{uuid.uuid4().hex[:8]}",
        pulse_ms=300,
        walk_through_ms=100,
    )
    await c.start()
    try:
        assert c.gateway is not None
        await c.gateway.ready.wait()
        async with aiohttp.ClientSession() as http:
            api = Api(c.url, http)
            for account in c.accounts:
                if account.role != "resident":
                    continue
                token = await api.login(account.login, account.password)
                status, body = await api.call("GET", "/api/v1/doors", token)
                assert status == 200
                result = await api.unlock_and_wait(token, body["doors"][0]["id"])
                assert result["status"] in {"opened", "released_not_opened"}
    finally:
        await c.stop()
    residents = [a for a in c.accounts if a.role == "resident"]
    assert len(residents) == 4
    cloud = _raw([c.data_dir / f"cloud.db{s}" for s in ("", "-wal", "-shm")])
    gateway = _raw([c.data_dir / "gateway" / f"gateway.db{s}" for s in ("", "-wal", "-shm")])
    assert len(cloud) > 10_000
    assert len(gateway) > 1_000
    for r in residents:
        assert r.name is not None
        assert r.phone is not None
        for needle in _needles(r.name, r.phone):
            assert needle not in cloud, (r.login, needle)
            assert needle not in gateway, (r.login, needle)
    # the test can fail: the accounts file (which is meant to hold them) does contain them
    accounts = (c.data_dir / "demo-accounts.json").read_bytes()
    assert residents[0].phone is not None
    assert residents[0].phone.encode() in accounts
