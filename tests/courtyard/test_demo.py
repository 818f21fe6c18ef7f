"""``courtyard demo`` as a user runs it: a real process, the printed URL, the accounts file."""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp

from courtyard.embedded_broker import free_port


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
