"""Remote unlock latency: API request → door-sensor-confirmed outcome, over a real Mosquitto.

Runs a whole community in this process (cloud on PostgreSQL when it is reachable, else SQLite; a
gateway on SQLite; simulated door controllers that open the door the instant the strike releases)
against a private Mosquitto tuned as production should be (``set_tcp_nodelay true``), or against
``--broker HOST:PORT``. Then, in the same run, it measures the unavoidable parts of one unlock:

* MQTT: four one-way hops are unavoidable — cloud→gateway (signed command), gateway→controller
  (pulse), controller→gateway (door opened), gateway→cloud (outcome) — i.e. two QoS 1 round trips;
* durable commits: the cloud's command row, the gateway's replay state (before the strike moves),
  the gateway's outcome in its outbox, the cloud's outcome row — two commits on each database.

It prints p50/p99 of the end-to-end latency, the sum of those parts, and the ratio.
Usage: ``python bench/unlock_latency.py [-n 300] [--broker 127.0.0.1:1883] [--sqlite]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.brokers import PrivateMosquitto
from cloud_sync.protocol import MqttLink
from cloud_sync.service.db import Database
from courtyard.community import Community

TERMINAL = {"opened", "released_not_opened", "rejected", "failed", "expired"}


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def pg_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), 0.3).close()
        return True
    except OSError:
        return False


async def fresh_pg() -> str:
    import asyncpg

    name = f"cy_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name


async def drop_pg(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


async def mqtt_round_trip_ms(host: str, port: int, protocol: str, n: int) -> float:
    """Median QoS 1 request/response round trip between two clients through the broker."""
    root = f"rtt{uuid.uuid4().hex[:6]}"
    a = MqttLink(host, port, f"{root}-a", protocol=protocol)  # type: ignore[arg-type]
    b = MqttLink(host, port, f"{root}-b", protocol=protocol)  # type: ignore[arg-type]
    await a.start()
    await b.start()
    await a.wait_connected(5)
    await b.wait_connected(5)
    a.subscribe(f"{root}/pong")
    b.subscribe(f"{root}/ping")

    async def echo() -> None:
        while True:
            m = await b.get()
            await b.publish(f"{root}/pong", m.payload)

    task = asyncio.create_task(echo())
    # wait for both subscriptions to be live
    while True:
        await a.publish(f"{root}/ping", b"warm")
        try:
            await asyncio.wait_for(a.get(), 0.5)
            break
        except TimeoutError:
            continue
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        a.publish_nowait(f"{root}/ping", str(i).encode())
        await a.get()
        samples.append((time.perf_counter() - t0) * 1000)
    task.cancel()
    await a.stop()
    await b.stop()
    return statistics.median(samples)


def sqlite_commit_ms(directory: Path, n: int) -> float:
    """Median one-row commit with WAL and synchronous=FULL (the gateway's store settings)."""
    con = sqlite3.connect(directory / "commit-probe.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.execute("INSERT INTO t (v) VALUES (?)", (os.urandom(64),))
        con.execute("COMMIT")
        samples.append((time.perf_counter() - t0) * 1000)
    con.close()
    return statistics.median(samples)


async def cloud_commit_ms(url: str, n: int) -> float:
    """Median one-row commit through the cloud's own database layer."""
    db = Database(url)
    try:
        async with db.session() as s:
            await s.execute(text("CREATE TABLE IF NOT EXISTS commit_probe (id BIGINT, v TEXT)"))
            await s.commit()
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            async with db.session() as s:
                await s.execute(text("INSERT INTO commit_probe (id, v) VALUES (:i, 'x')"), {"i": i})
                await s.commit()
            samples.append((time.perf_counter() - t0) * 1000)
        async with db.session() as s:
            await s.execute(text("DROP TABLE commit_probe"))
            await s.commit()
        return statistics.median(samples)
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="timed unlocks")
    ap.add_argument("--broker", help="HOST:PORT of an existing Mosquitto (default: a private one)")
    ap.add_argument("--sqlite", action="store_true", help="cloud on SQLite even if PostgreSQL runs")
    args = ap.parse_args()

    private = None
    if args.broker:
        host, _, port_text = args.broker.rpartition(":")
        port = int(port_text)
        broker_desc = f"Mosquitto at {args.broker} (as configured there)"
    else:
        private = PrivateMosquitto()
        host, port = "127.0.0.1", private.port
        broker_desc = f"private Mosquitto 127.0.0.1:{port} with set_tcp_nodelay true"
    pg_name = None
    tmp = tempfile.TemporaryDirectory()
    data = Path(tmp.name)
    if pg_reachable() and not args.sqlite:
        pg_name = await fresh_pg()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
        db_desc = "PostgreSQL 127.0.0.1:5432"
    else:
        url = f"sqlite+aiosqlite:///{data / 'cloud.db'}"
        db_desc = "SQLite (WAL, synchronous=FULL)"
    community = Community(
        data / "community",
        broker_host=host,
        broker_port=port,
        broker_protocol="5",
        database_url=url,
        fast_passwords=True,
        isolate_topics=True,
        open_delay_ms=0,
        walk_through_ms=5,
        pulse_ms=100,
    )
    try:
        await community.start()
        assert community.gateway is not None
        await community.gateway.ready.wait()
        sim = community.simulators["b1-gate"]
        await asyncio.to_thread(sim.wait_for, lambda s: s.online, 10)
        li = community.account("li")
        latencies: list[float] = []
        outcomes: dict[str, int] = {}
        async with aiohttp.ClientSession(base_url=community.url) as http:
            async with http.post(
                "/api/v1/sessions", json={"login": li.login, "password": li.password}
            ) as r:
                token = (await r.json())["token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with http.get("/api/v1/doors", headers=auth) as r:
                door = next(
                    d["id"]
                    for d in (await r.json())["doors"]
                    if d["name"] == "Building 1 main gate"
                )
            for i in range(args.n + 20):
                # Let the previous pulse finish so every unlock opens a closed, locked door.
                await asyncio.to_thread(
                    sim.wait_for, lambda s: s.door == "closed" and s.strike == "locked", 10
                )
                t0 = time.perf_counter()
                async with http.post(f"/api/v1/doors/{door}/unlock", headers=auth, json={}) as r:
                    body = await r.json()
                status = body["status"]
                while status not in TERMINAL:
                    async with http.get(
                        f"/api/v1/commands/{body['command_id']}?wait=10", headers=auth
                    ) as r:
                        status = (await r.json())["status"]
                elapsed = (time.perf_counter() - t0) * 1000
                if i >= 20:  # warm-up excluded
                    latencies.append(elapsed)
                    outcomes[status] = outcomes.get(status, 0) + 1
    finally:
        await community.stop()

    rtt = await mqtt_round_trip_ms(host, port, "5", 500)
    gw_commit = sqlite_commit_ms(data, 300)
    cloud_commit = await cloud_commit_ms(url, 300)
    if pg_name:
        await drop_pg(pg_name)
    if private:
        private.stop()
    tmp.cleanup()

    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    floor = 2 * rtt + 2 * gw_commit + 2 * cloud_commit
    print(f"broker: {broker_desc}")
    print(f"cloud database: {db_desc}; gateway database: SQLite (WAL, synchronous=FULL)")
    print(f"unlocks: {len(latencies)} timed (20 warm-up), outcomes {outcomes}")
    print(
        f"end to end (API request -> confirmed outcome): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"mean {statistics.fmean(latencies):.2f} ms"
    )
    print("unavoidable parts, measured in this run:")
    print(f"  MQTT QoS 1 round trip (median) {rtt:.3f} ms x 2 = {2 * rtt:.3f} ms")
    print(f"  gateway SQLite commit (median) {gw_commit:.3f} ms x 2 = {2 * gw_commit:.3f} ms")
    print(f"  cloud database commit (median) {cloud_commit:.3f} ms x 2 = {2 * cloud_commit:.3f} ms")
    print(f"  sum {floor:.3f} ms")
    print(
        f"ratio p50 / sum = {p50 / floor:.2f} (target <= 3); "
        f"p50 target <= 15 ms: {'met' if p50 <= 15 else 'MISSED'}; "
        f"p99 target <= 50 ms: {'met' if p99 <= 50 else 'MISSED'}"
    )


if __name__ == "__main__":
    asyncio.run(main())
