"""Remote unlock latency: API request → door-sensor-confirmed outcome, over a real Mosquitto.

Runs a whole community in this process (cloud on PostgreSQL when it is reachable, else SQLite; a
gateway on SQLite; simulated door controllers that open the door the instant the strike releases)
against a private Mosquitto tuned as production should be (``set_tcp_nodelay true``), or against
``--broker HOST:PORT``. Then, in the same run, it measures the unavoidable parts of one unlock:

* MQTT: four one-way hops are unavoidable — cloud→gateway (signed command), gateway→controller
  (pulse), controller→gateway (door opened), gateway→cloud (outcome) — i.e. two QoS 1 round trips;
* durable commits: the cloud's command row, the gateway's replay state (before the strike moves),
  the gateway's outcome in its outbox, the cloud's outcome row — two commits on each database.

It prints p50/p99 of the end-to-end latency, the sum of those parts, and the ratio, then a
breakdown: the median time from the request's start to each step the cloud can observe (its
dispatch, the client's 202, each gateway report batch reaching the cloud's MQTT thread, being
picked up by the event loop, and committed + acknowledged + waiters woken), measured in the same
run by wrapping the cloud's dispatcher and ingestor.
Usage: ``python bench/unlock_latency.py [-n 300] [--broker 127.0.0.1:1883] [--sqlite]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.brokers import PrivateMosquitto
from cloud_sync.protocol import MqttLink
from cloud_sync.service.db import Database
from cloud_sync.service.state import AUTH, INGESTOR, LINK, WAITERS
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


class Probe:
    """Timestamps (perf_counter) of the cloud's steps, taken by wrapping a few of its objects.

    Only stable entry points are wrapped: the authenticator, the MQTT link's publish and its
    paho ``on_message`` callback, the ingestor's ``handle`` and the long-poll waiters' ``notify``.
    """

    def __init__(self, app: Any) -> None:
        self.marks: dict[str, float] = {}  # the unlock in progress, before its id is known
        self.by_command: dict[str, dict[str, float]] = {}
        self.handled: list[tuple[float, float, frozenset[str]]] = []  # every batch handled
        self._arrivals: dict[bytes, float] = {}
        auth, link, ingestor, waiters = app[AUTH], app[LINK], app[INGESTOR], app[WAITERS]
        on_message = link._client.on_message

        def arrived(c: Any, userdata: Any, msg: Any) -> None:  # paho's thread
            self._arrivals[bytes(msg.payload)] = time.perf_counter()
            on_message(c, userdata, msg)

        authenticate, publish = auth.authenticate, link.publish
        handle, notify = ingestor.handle, waiters.notify

        async def timed_authenticate(*a: Any, **kw: Any) -> Any:
            self.marks.setdefault("cloud starts the POST (authentication)", time.perf_counter())
            return await authenticate(*a, **kw)

        async def timed_publish(topic: str, *a: Any, **kw: Any) -> Any:
            if topic.endswith("/down/cmd"):
                self.marks.setdefault("cloud publishes the signed command", time.perf_counter())
            await publish(topic, *a, **kw)
            if topic.endswith("/down/cmd"):
                self.marks.setdefault("broker's PUBACK for the command", time.perf_counter())

        async def timed_handle(message: Any) -> None:
            start = time.perf_counter()
            arrived_at = self._arrivals.pop(message.payload, start)
            reports: dict[str, str] = {}
            if message.topic.endswith("/up/events"):
                for event in json.loads(message.payload).get("events", ()):
                    data = event.get("data") or {}
                    if event.get("type") == "command.status":
                        status = data.get("status")
                        name = "outcome" if status in TERMINAL else str(status)
                        reports.setdefault(str(data.get("command")), name)
            for command, name in reports.items():
                marks = self.by_command.setdefault(command, {})
                marks.setdefault(f"{name} batch reaches the cloud's MQTT thread", arrived_at)
                marks.setdefault(f"{name} batch picked up by the event loop", start)
            await handle(message)
            self.handled.append((start, time.perf_counter(), frozenset(reports)))

        def timed_notify(command_ids: Any, values: Any = None) -> None:
            now = time.perf_counter()
            ids = list(command_ids)
            for command in ids:
                state = (values or {}).get(command)
                name = "outcome" if state is not None and state.status in TERMINAL else "status"
                marks = self.by_command.setdefault(command, {})
                marks.setdefault(f"{name} committed, long poll woken", now)
            if values is None:
                notify(ids)
            else:
                notify(ids, values)

        link._client.on_message = arrived
        auth.authenticate = timed_authenticate
        link.publish = timed_publish
        ingestor.handle = timed_handle
        waiters.notify = timed_notify

    def start(self) -> None:
        self.marks = {}

    def finish(self, command: str) -> None:
        self.by_command.setdefault(command, {}).update(self.marks)

    def timeline(self, command: str, t0: float, t_end: float) -> dict[str, float]:
        marks = {k: (t - t0) * 1000 for k, t in self.by_command.get(command, {}).items()}
        # Event-loop time spent ingesting OTHER batches (e.g. the previous pulse's relock)
        # while this unlock was in flight.
        other = sum(
            min(end, t_end) - max(start, t0)
            for start, end, commands in self.handled
            if command not in commands and end > t0 and start < t_end
        )
        marks["~ (loop time spent on other batches meanwhile)"] = other * 1000
        return marks


def breakdown(timelines: list[dict[str, float]]) -> list[str]:
    """Median offset from the request's start of each step, in the order they happen."""
    names: dict[str, list[float]] = {}
    for marks in timelines:
        for name, t in marks.items():
            names.setdefault(name, []).append(t)
    rows = sorted(
        (statistics.median(v), k, len(v)) for k, v in names.items() if not k.startswith("~")
    )
    lines, prev = [], 0.0
    for median, name, count in rows:
        note = "" if count == len(timelines) else f"  (in {count}/{len(timelines)})"
        lines.append(f"  {median:7.2f} ms  (+{median - prev:6.2f})  {name}{note}")
        prev = median
    for name, v in names.items():
        if name.startswith("~"):
            lines.append(f"  {statistics.median(v):7.2f} ms  {name[2:]} (median)")
    return lines


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
        assert community.cloud_app is not None
        probe = Probe(community.cloud_app)
        runs: list[tuple[str, float, float]] = []
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
                probe.start()
                t0 = time.perf_counter()
                async with http.post(f"/api/v1/doors/{door}/unlock", headers=auth, json={}) as r:
                    body = await r.json()
                probe.marks["client has the 202"] = time.perf_counter()
                probe.finish(body["command_id"])
                status = body["status"]
                while status not in TERMINAL:
                    async with http.get(
                        f"/api/v1/commands/{body['command_id']}?wait=10", headers=auth
                    ) as r:
                        status = (await r.json())["status"]
                t_end = time.perf_counter()
                elapsed = (t_end - t0) * 1000
                probe.by_command[body["command_id"]]["client has the outcome"] = t_end
                if i >= 20:  # warm-up excluded
                    latencies.append(elapsed)
                    runs.append((body["command_id"], t0, t_end))
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
    print("where the time goes (median ms after the request starts; +step from the line above):")
    print("\n".join(breakdown([probe.timeline(*run) for run in runs])))


if __name__ == "__main__":
    asyncio.run(main())
