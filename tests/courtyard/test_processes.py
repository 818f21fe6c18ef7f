"""The production commands as separate processes: ``cloud run``, ``gateway run``, ``sim door``.

Keys and schema are made with ``courtyard keys init`` and ``courtyard db upgrade``, the processes
read TOML configuration files, and a resident opens a door through the API of the cloud process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_sync.service.db import Database
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.passwords import PasswordHasher
from courtyard.embedded_broker import free_port
from courtyard.seed import CommunityPlan, DoorPlan, ResidentPlan, seed_community

PLAN = CommunityPlan(
    doors=(DoorPlan("b1-gate", "Building 1 gate", 1), DoorPlan("b2-gate", "Building 2 gate", 2)),
    residents=(ResidentPlan("li", "李小红", "1-201", 1),),
    staff=(),
)


def courtyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "courtyard", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def spawn(procs: list[subprocess.Popen[bytes]], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "courtyard", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    procs.append(p)
    return p


async def wait_http(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> Any:
    """Poll ``url`` until it answers 200 (the process is starting), failing if it dies."""
    async with asyncio.timeout(60):
        while True:
            assert proc.poll() is None, f"process exited with {proc.returncode}"
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return await r.json()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def test_cloud_gateway_and_simulator_processes_open_a_door(
    broker: Any, database_url: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    keys_dir = tmp_path / "keys"
    made = courtyard("keys", "init", str(keys_dir))
    assert made.returncode == 0, made.stderr
    assert "command-signing key id" in made.stdout
    upgraded = courtyard("db", "upgrade", "--url", database_url)
    assert upgraded.returncode == 0, upgraded.stderr

    gateway_id = f"gw-{uuid.uuid4().hex[:8]}"
    root, prefix = f"cy{uuid.uuid4().hex[:6]}", f"site{uuid.uuid4().hex[:6]}"
    db = Database(database_url)
    try:
        async with db.session() as session:
            accounts = await seed_community(
                session,
                CloudKeys.load_or_create(keys_dir),
                PasswordHasher.fast_for_tests(),
                PLAN,
                gateway_id=gateway_id,
                pulse_ms=500,
            )
            await session.commit()
    finally:
        await db.dispose()

    http_port, health_port = free_port(), free_port()
    (tmp_path / "cloud.toml").write_text(
        f'[cloud]\ndatabase_url = "{database_url}"\nkey_dir = "{keys_dir}"\n'
        f'http_port = {http_port}\ntopic_root = "{root}"\n'
        f'[cloud.broker]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'protocol = "{broker.protocol}"\n'
    )
    broker_toml = f'host = "{broker.host}"\nport = {broker.port}\nprotocol = "{broker.protocol}"\n'
    doors = "".join(
        f'[[gateway.doors]]\nid = "{d.local_id}"\ndevice = "ctrl-{d.local_id}"\npulse_ms = 500\n'
        for d in PLAN.doors
    )
    (tmp_path / "gateway.toml").write_text(
        f'[gateway]\nid = "{gateway_id}"\ndata_dir = "{tmp_path / "gw"}"\n'
        f'topic_root = "{root}"\ncloud_keys = ["{keys_dir / "command-signing.key.pub"}"]\n'
        f'[gateway.cloud]\n{broker_toml}[gateway.site]\n{broker_toml}prefix = "{prefix}"\n'
        f"[gateway.http]\nport = {health_port}\n{doors}"
    )
    cloud = spawn(
        processes, tmp_path / "cloud.log", "cloud", "run", "-c", str(tmp_path / "cloud.toml")
    )
    gateway = spawn(
        processes, tmp_path / "gateway.log", "gateway", "run", "-c", str(tmp_path / "gateway.toml")
    )
    sim = spawn(
        processes,
        tmp_path / "sim.log",
        "sim",
        "door",
        "--broker",
        f"{broker.host}:{broker.port}",
        "--prefix",
        prefix,
        "-d",
        "ctrl-b1-gate",
        "-d",
        "ctrl-b2-gate",
    )
    base = f"http://127.0.0.1:{http_port}"
    async with aiohttp.ClientSession() as http:
        await wait_http(http, f"{base}/api/v1/openapi.json", cloud)
        async with asyncio.timeout(60):
            while True:
                health = await wait_http(http, f"http://127.0.0.1:{health_port}/healthz", gateway)
                if health["status"] == "ok" and all(
                    state == "online" for state in health["doors"].values()
                ):
                    break
                await asyncio.sleep(0.05)
        li = accounts[0]
        async with http.post(
            f"{base}/api/v1/sessions", json={"login": li.login, "password": li.password}
        ) as r:
            assert r.status == 201
            auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
        async with http.get(f"{base}/api/v1/doors", headers=auth) as r:
            (door,) = (await r.json())["doors"]
        async with http.post(f"{base}/api/v1/doors/{door['id']}/unlock", headers=auth) as r:
            assert r.status == 202
            command = (await r.json())["command_id"]
        async with http.get(f"{base}/api/v1/commands/{command}?wait=15", headers=auth) as r:
            assert (await r.json())["status"] == "opened"
        async with http.get(f"http://127.0.0.1:{health_port}/metrics") as r:
            assert "courtyard" in await r.text()

    for proc, sig in ((gateway, signal.SIGINT), (sim, signal.SIGINT), (cloud, signal.SIGTERM)):
        proc.send_signal(sig)
        assert proc.wait(30) == 0, (tmp_path / "gateway.log").read_text()
