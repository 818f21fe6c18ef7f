"""``courtyard demo`` as a user runs it: a real process, the printed URL, the accounts file."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from courtyard.embedded_broker import free_port

_TERMINAL = {"opened", "released_not_opened", "failed", "rejected", "expired"}


async def _command_outcome(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], command: str
) -> str:
    for _ in range(10):
        async with http.get(f"{url}/api/v1/commands/{command}?wait=10", headers=auth) as r:
            status = str((await r.json())["status"])
        if status in _TERMINAL:
            return status
    return status


async def _deposit(
    http: aiohttp.ClientSession, url: str, courier: dict[str, Any], unit: str
) -> str:
    async with http.post(
        f"{url}/api/v1/sessions", json={"login": courier["login"], "password": courier["password"]}
    ) as r:
        assert r.status == 201
        auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
    async with http.get(f"{url}/api/v1/locker-banks", headers=auth) as r:
        (bank,) = (await r.json())["banks"]
    async with http.post(
        f"{url}/api/v1/parcels",
        headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
        json={"bank": bank["id"], "size": "S", "unit": unit},
    ) as r:
        assert r.status == 202, await r.text()
        out = await r.json()
    assert await _command_outcome(http, url, auth, out["command"]["command_id"]) == "opened"
    return str(out["parcel"]["id"])


async def _parcel_reaches(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], parcel: str, state: str
) -> None:
    """Poll li's view of the parcel (the demo's attendant acts on its own clock, ~4 s)."""
    seen = None
    async with asyncio.timeout(30):
        while seen != state:
            async with http.get(f"{url}/api/v1/parcels/{parcel}", headers=auth) as r:
                assert r.status == 200, await r.text()
                seen = (await r.json())["state"]
            await asyncio.sleep(0.2)


def _lines(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put("")

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return q, thread


async def test_demo_serves_the_page_and_opens_a_building_1_door(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "courtyard",
            "demo",
            "--data-dir",
            str(data),
            "--http-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines, pump = _lines(proc)
    seen: list[str] = []
    try:
        url = None
        while url is None:
            line = lines.get(timeout=60)
            assert line, "demo exited early:\n" + "".join(seen)
            seen.append(line)
            if "Courtyard demo is running:" in line:
                url = line.split("running:", 1)[1].strip().rstrip("/")
        assert url == f"http://127.0.0.1:{port}"

        accounts_file = data / "demo-accounts.json"
        assert stat.S_IMODE(accounts_file.stat().st_mode) == 0o600
        accounts = json.loads(accounts_file.read_text("utf-8"))["accounts"]
        residents = [a for a in accounts if a["role"] == "resident"]
        assert {"engineer", "admin", "auditor", "courier"} <= {a["role"] for a in accounts}
        for a in residents:
            assert a["name"]
            assert a["phone"]
            assert a["unit"]
            assert len(a["password"]) >= 12
        li = next(a for a in residents if a["unit"].startswith("1-"))
        assert li["password"] not in Path(__file__).read_text()

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/") as r:
                assert r.status == 200
                assert "Courtyard" in await r.text()
            async with http.post(
                f"{url}/api/v1/sessions", json={"login": li["login"], "password": li["password"]}
            ) as r:
                assert r.status == 201
                token = (await r.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{url}/api/v1/doors", headers=auth) as r:
                doors = (await r.json())["doors"]
            assert {d["building"] for d in doors} == {"Building 1"}
            async with http.post(
                f"{url}/api/v1/doors/{doors[0]['id']}/unlock", headers=auth, json={}
            ) as r:
                assert r.status == 202
                command = (await r.json())["command_id"]
            status = None
            for _ in range(10):
                async with http.get(f"{url}/api/v1/commands/{command}?wait=10", headers=auth) as r:
                    status = (await r.json())["status"]
                if status in {"opened", "released_not_opened", "failed", "rejected", "expired"}:
                    break
            assert status == "opened"

            # Story 2 in the demo: the courier deposits for li's unit, the demo's attendant puts
            # the parcel in and shuts the door, li opens it from the phone and takes it out.
            async with http.get(f"{url}/courier") as r:
                assert r.status == 200
            courier = next(a for a in accounts if a["role"] == "courier")
            parcel = await _deposit(http, url, courier, li["unit"])
            await _parcel_reaches(http, url, auth, parcel, "waiting")
            async with http.post(
                f"{url}/api/v1/parcels/{parcel}/pickup",
                headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
            ) as r:
                assert r.status == 202, await r.text()
                command = (await r.json())["command"]["command_id"]
            assert await _command_outcome(http, url, auth, command) == "opened"
            await _parcel_reaches(http, url, auth, parcel, "picked_up")
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
        pump.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert rc == 0, "".join(seen)
    # every database and key file lives under the data directory, keys readable by us alone
    assert (data / "cloud.db").exists()
    assert (data / "gateway" / "gateway.db").exists()
    key_files = list((data / "cloud-keys").iterdir())
    assert key_files
    for f in key_files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
