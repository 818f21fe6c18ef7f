"""Cloud API reads: a resident's parcels through the real app vs one raw asyncpg query vs bare JSON.

A fresh PostgreSQL database (``cy_bench_…`` on 127.0.0.1, dropped at the end) is migrated the way
the product does it (:func:`cloud_sync.service.migrate.upgrade`) and seeded through
:mod:`cloud_sync.service.provisioning`: one site, a gateway, a locker bank, the resident ``li`` of
unit 1-101 with ``--rows`` parcels in every state, and ``--others`` parcels of nine other units
(so the authorization filter has rows to leave out). ``li`` logs in over the API for a token.

One server process serves three aiohttp apps on free 127.0.0.1 ports:

1. **product** — :func:`cloud_sync.service.app.create_app` as deployed (its own pool, a private
   Mosquitto for its MQTT link), ``GET /api/v1/parcels`` with li's bearer token: the guard
   authenticates, the policy decides, the handler queries, filters per parcel and serializes;
2. **raw** — one handler, one asyncpg query (a pool of 10–20, like the product's) for the same
   rows (the product's statement: every parcel column and the bank's, for li's site and units,
   newest first), dumped with ``json.dumps`` to the same document;
3. **bare** — one handler returning that document as a constant (the same bytes).

The load generator runs in a separate process (``multiprocessing``, spawn), so server and client
never share an event loop, a GIL or — the machine has 2 cores — necessarily a core: N concurrent
keep-alive connections (one aiohttp ClientSession, N tasks each looping request after request), a
warm-up then a fixed window. Targets are measured in alternating rounds (order rotated each round)
so drift in the machine's load hits all three alike. Every response is checked: status 200 and the
expected number of parcels, else the run says so. Over each window the client also samples, from
``/proc``, the CPU time of the server process, of the PostgreSQL backends of the bench database, of
itself, and the machine's busy share: server CPU per request is the cost that matters when the
server is CPU-bound, and the client's share shows whether it could have been the bottleneck. Around
each window it counts the sessions PostgreSQL opened on the database (``pg_stat_database``): a pool
that keeps its connections opens none once warm. (Backends that start and end inside a window are
not in the PG CPU figure, which therefore understates a churning pool's.)

It prints requests/s and p50/p99 latency per target and round, the ratios product/raw (the bar in
DESIGN.md §8: ≥ 0.70) and raw/bare (context: ~0.25), PASS/MISS, and then where the product's time
goes: each step of its path timed in this process, sequentially, against the same database (CPU
µs per request: authentication, the list query through SQLAlchemy Core vs the same query on raw
asyncpg, the policy per parcel, building and dumping the response models). ``--profile`` adds a
cProfile (CPU clock) of the server process during one more product window: its own time by
package, per request, and the costliest functions.

Usage: ``python -m bench.api_reads [--duration 4] [--warmup 1] [--rounds 3] [--concurrency 16]
[--rows 20] [--others 200] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud_sync.service import BrokerSettings, CloudSettings, create_app, directory, provisioning
from cloud_sync.service.auth import Authenticator
from cloud_sync.service.db import Database
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.migrate import upgrade
from cloud_sync.service.parcel_desk import estimated_fee
from cloud_sync.service.passwords import PasswordHasher
from cloud_sync.service.policy import Action, ParcelRes, decide
from cloud_sync.service.ratelimit import LoginLimiter
from cloud_sync.service.tables import Parcel
from trust import SafeClock

HOST = "127.0.0.1"
PATH = "/api/v1/parcels"
TARGETS = ("product", "raw", "bare")
BAR = 0.70  # product / raw, DESIGN.md §8
CONTEXT = 0.25  # raw / bare, "here"
MARKER = b'"bank_name"'  # once per parcel in the document
HOUR_MS = 3_600_000
# The states a resident's list shows, in the proportions of a lived-in unit: mostly picked up.
STATES = (
    "picked_up",
    "waiting",
    "picked_up",
    "requested",
    "picked_up",
    "cancelled",
    "picked_up",
    "empty",
    "retrieved",
    "failed",
)
SIZES = ("mini", "S", "M", "L")
COMPARTMENTS = tuple((no, SIZES[(no - 1) % 4]) for no in range(1, 17))

# The product's statement (routes_parcels.list_parcels, first page, resident): every parcel column
# and the bank's local id and name, for the resident's site and units, newest first, limit + 1.
RAW_SQL = """
SELECT p.*, b.local_id AS bank_local, b.name AS bank_name
FROM parcels p JOIN locker_banks b ON b.id = p.bank_id
WHERE p.site_id = $1 AND p.unit_id = ANY($2::int[])
ORDER BY p.created_at DESC, p.id DESC
LIMIT $3
"""
PAGE = 50  # ParcelsQuery's default limit


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))] if s else float("nan")


# -- the database -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The seeded database and who logs in."""

    name: str
    url: str
    key_dir: str
    login: str
    password: str
    site_id: int
    unit_ids: tuple[int, ...]
    rows: int


def pg_url(name: str) -> str:
    return f"postgresql://postgres@{HOST}:5432/{name}"


async def create_database() -> str:
    name = f"cy_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(host=HOST, user="postgres", database="postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def sessions_opened(name: str) -> int:
    """How many sessions PostgreSQL has opened on database ``name`` (pg_stat_database)."""
    conn = await asyncpg.connect(host=HOST, user="postgres", database="postgres")
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        value = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", name
        )
    finally:
        await conn.close()
    return int(value or 0)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(host=HOST, user="postgres", database="postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _parcel(
    i: int, state: str, site: int, gateway: str, bank: int, unit: int, label: str, courier: int
) -> Parcel:
    """A parcel row as the inbox leaves it in ``state`` (like tests/cloud/conftest.py's)."""
    now = time.time_ns() // 1_000_000
    created = now - (i + 1) * 5 * HOUR_MS - secrets.randbelow(HOUR_MS)
    deposited = created + 60_000 if state not in ("requested", "cancelled", "failed") else None
    if state == "empty":
        deposited = None
    done = state in ("picked_up", "retrieved")
    return Parcel(
        id=uuid.uuid4().hex,
        site_id=site,
        gateway_id=gateway,
        bank_id=bank,
        compartment=None if state == "requested" else 1 + i % 16,
        size=SIZES[i % 4],
        unit_id=unit,
        unit_label=label,
        courier_account_id=courier,
        company="SF",
        tracking=f"SF{i:010d}",
        state=state,
        reason={"cancelled": "courier_cancelled", "failed": "door_failed"}.get(state),
        code_n=0 if state == "waiting" else None,
        via="command",
        fee_cents=100 if state == "picked_up" else None,
        fee_state="owed" if state == "picked_up" else None,
        created_at=created,
        deposited_at=deposited,
        picked_up_at=deposited + 3 * HOUR_MS if done and deposited else None,
        updated_at=(deposited or created) + (3 * HOUR_MS if done else 0),
    )


async def provision(name: str, key_dir: Path, rows: int, others: int) -> Plan:
    """Migrate and seed the database: one site, li with ``rows`` parcels, others elsewhere."""
    url = pg_url(name)
    await upgrade(url)
    keys = CloudKeys.load_or_create(key_dir)
    hasher = PasswordHasher.fast_for_tests()
    db = Database(url)
    password = secrets.token_urlsafe(12)
    try:
        async with db.session() as s:
            site = await provisioning.create_site(s, "Bench Court")
            assert site.id is not None
            sid = site.id
            b1 = await provisioning.create_building(s, sid, "1")
            assert b1.id is not None
            units = []
            for n in range(10):
                unit = await provisioning.create_unit(s, sid, b1.id, f"1-{101 + n}")
                assert unit.id is not None
                units.append((unit.id, unit.label))
            li = await directory.create_resident(s, keys, sid, "李小红", "13812348000")
            zhang = await directory.create_resident(s, keys, sid, "张伟", "13987654321")
            assert li.id is not None
            assert zhang.id is not None
            await provisioning.add_membership(s, sid, li.id, units[0][0], "owner")
            await provisioning.add_membership(s, sid, zhang.id, units[1][0], "tenant")
            for login, resident in (("li", li.id), ("zhang", zhang.id)):
                await provisioning.create_account(
                    s,
                    hasher,
                    site_id=sid,
                    login=login,
                    password=password,
                    role="resident",
                    resident_id=resident,
                )
            courier = await provisioning.create_courier(
                s, hasher, site_id=sid, login="courier", password=password, company="SF"
            )
            assert courier.id is not None
            gateway = await provisioning.create_gateway(s, sid, "gw-bench", "Gate house")
            bank = await provisioning.create_locker_bank(
                s,
                sid,
                gateway.id,
                "A",
                name="Building 1 lobby",
                building_id=b1.id,
                compartments=COMPARTMENTS,
            )
            assert bank.id is not None
            for i in range(rows):
                unit_id, label = units[0]
                state = STATES[i % len(STATES)]
                s.add(_parcel(i, state, sid, gateway.id, bank.id, unit_id, label, courier.id))
            for i in range(others):
                unit_id, label = units[1 + i % 9]
                state = STATES[i % len(STATES)]
                s.add(_parcel(i, state, sid, gateway.id, bank.id, unit_id, label, courier.id))
            await s.commit()
    finally:
        await db.dispose()
    return Plan(name, url, str(key_dir), "li", password, sid, (units[0][0],), rows)


# -- the servers (their own process) ----------------------------------------------------------


def raw_document(rows: list[asyncpg.Record], now_ms: int, limit: int) -> bytes:
    """The product's document (ParcelsOut) from raw rows: same keys, order and compact format."""
    page = rows[:limit]
    parcels = [
        {
            "id": r["id"],
            "bank": r["bank_id"],
            "bank_name": r["bank_name"],
            "compartment": r["compartment"],
            "size": r["size"],
            "unit": r["unit_label"],
            "company": r["company"],
            "tracking": r["tracking"],
            "state": r["state"],
            "reason": r["reason"],
            "fee_cents": r["fee_cents"],
            "fee_state": r["fee_state"],
            "fee_due_cents": (
                estimated_fee(r["deposited_at"], now_ms) if r["state"] == "waiting" else None
            ),
            "created_at": r["created_at"],
            "deposited_at": r["deposited_at"],
            "picked_up_at": r["picked_up_at"],
            "updated_at": r["updated_at"],
        }
        for r in page
    ]
    last = page[-1] if page else None
    more = len(rows) > limit and last is not None
    doc = {
        "parcels": parcels,
        "next_before": f"{last['created_at']}.{last['id']}" if more and last else None,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def raw_app(pool: asyncpg.Pool, site_id: int, unit_ids: list[int]) -> web.Application:
    async def parcels(request: web.Request) -> web.Response:
        async with pool.acquire() as conn:
            rows = await conn.fetch(RAW_SQL, site_id, unit_ids, PAGE + 1)
        body = raw_document(rows, time.time_ns() // 1_000_000, PAGE)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(PATH, parcels)
    return app


def bare_app(body: bytes) -> web.Application:
    async def parcels(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(PATH, parcels)
    return app


def serve(conn: Connection, plan: Plan, broker_port: int) -> None:
    """The server process: three apps until told to stop; profiles the loop on request."""
    asyncio.run(_serve(conn, plan, broker_port))


async def _serve(conn: Connection, plan: Plan, broker_port: int) -> None:
    settings = CloudSettings(
        database_url=plan.url,
        key_dir=Path(plan.key_dir),
        broker=BrokerSettings(host=HOST, port=broker_port),
        topic_root=f"bench{uuid.uuid4().hex[:8]}",
        argon2="fast",
    )
    pool = await asyncpg.create_pool(pg_url(plan.name), min_size=10, max_size=20)
    async with pool.acquire() as c:
        rows = await c.fetch(RAW_SQL, plan.site_id, list(plan.unit_ids), PAGE + 1)
    constant = raw_document(rows, time.time_ns() // 1_000_000, PAGE)
    apps = {
        "product": create_app(settings),
        "raw": raw_app(pool, plan.site_id, list(plan.unit_ids)),
        "bare": bare_app(constant),
    }
    runners: list[web.AppRunner] = []
    ports: dict[str, int] = {}
    try:
        for name, app in apps.items():
            # As courtyard/cloud.py deploys it: no access log.
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, HOST, 0).start()
            ports[name] = runner.addresses[0][1]
        conn.send(ports)
        profile: cProfile.Profile | None = None
        while True:
            msg = await asyncio.to_thread(conn.recv)
            if msg == "profile":
                profile = cProfile.Profile(time.process_time)
                profile.enable()  # back on the loop's thread: it profiles the event loop
                conn.send("profiling")
            elif isinstance(msg, tuple) and msg[0] == "profile-stop" and profile is not None:
                profile.disable()
                conn.send(profile_report(profile, msg[1]))
            else:
                break
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await pool.close()


#: Where a function's own CPU time is charged, by the first matching fragment of its file/name.
PROFILE_GROUPS = (
    ("greenlet", "SQLAlchemy (incl. its greenlet bridge)"),
    ("sqlalchemy", "SQLAlchemy (incl. its greenlet bridge)"),
    ("asyncpg", "asyncpg"),
    ("pydantic", "pydantic"),
    ("cloud_sync", "cloud_sync (guard, auth, policy, handler)"),
    ("trust", "cloud_sync (guard, auth, policy, handler)"),
    ("aiohttp", "aiohttp (HTTP server)"),
    ("multidict", "aiohttp (HTTP server)"),
    ("yarl", "aiohttp (HTTP server)"),
    ("_socket", "socket syscalls (send/recv)"),
    ("asyncio", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
    ("select.epoll", "asyncio event loop"),
)


def profile_report(profile: cProfile.Profile, requests: int) -> str:
    """The profiled CPU time by package, per request, and the costliest functions."""
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: Counter[str] = Counter()

    def group(file: str, func: str) -> str | None:
        where = f"{file} {func}"
        return next((g for frag, g in PROFILE_GROUPS if frag in where), None)

    for (file, _line, func), (_cc, _calls, tottime, _cum, callers) in raw.items():
        label = group(file, func)
        if label is None and file == "~" and callers:
            # A builtin (isinstance, getattr, dict.get …): charged to the packages calling it.
            for (c_file, _c_line, c_func), c_stats in callers.items():
                groups[group(c_file, c_func) or "other"] += c_stats[2]
            continue
        groups[label or "other"] += tottime
    total = sum(groups.values())
    lines = [
        f"cProfile (CPU clock) of the server process over {requests} product requests: "
        f"{total / requests * 1e6:.0f} µs/request profiled (the profiler inflates it); own time:"
    ]
    for label, t in groups.most_common():
        lines.append(f"  {t / total * 100:5.1f} %  {t / requests * 1e6:6.0f} µs/req  {label}")
    stats.sort_stats("tottime").print_stats(20)
    lines.append(out.getvalue())
    return "\n".join(lines)


# -- the load generator (its own process) -----------------------------------------------------


def _proc_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_backends(database: str) -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend connected to ``database``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(b"postgres:") and f" {database} ".encode() in cmd:
            found[int(entry)] = _proc_cpu(int(entry))
    return found


def _machine() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class Sample:
    at: float
    client: float
    server: float
    pg: dict[int, float]
    machine: tuple[float, float]


def _sample(server_pid: int, database: str) -> Sample:
    return Sample(
        time.perf_counter(),
        time.process_time(),
        _proc_cpu(server_pid),
        _pg_backends(database),
        _machine(),
    )


def load(conn: Connection) -> None:
    """The load generator's process: run each job it is sent, send back its figures."""
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(asyncio.run(_load(**job)))


async def _load(
    url: str,
    headers: dict[str, str],
    concurrency: int,
    warmup: float,
    duration: float,
    expect: int,
    server_pid: int,
    database: str,
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    wrong = completed = 0
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = time.perf_counter() + warmup
        end = start + duration

        async def sampler() -> None:
            await asyncio.sleep(start - time.perf_counter())
            samples.append(_sample(server_pid, database))
            await asyncio.sleep(end - time.perf_counter())
            samples.append(_sample(server_pid, database))

        async def worker() -> None:
            nonlocal wrong, completed
            while (t0 := time.perf_counter()) < end:
                async with session.get(url) as resp:
                    body = await resp.read()
                    status = resp.status
                t1 = time.perf_counter()
                completed += 1
                if start <= t1 <= end:
                    latencies.append(t1 - t0)
                    statuses[status] += 1
                    if status != 200 or body.count(MARKER) != expect:
                        wrong += 1

        await asyncio.gather(sampler(), *(worker() for _ in range(concurrency)))
    a, b = samples
    elapsed = b.at - a.at
    pg = sum(cpu - a.pg.get(pid, 0.0) for pid, cpu in b.pg.items())
    n = len(latencies)
    return {
        "requests": n,
        "completed": completed,
        "elapsed": elapsed,
        "rps": n / elapsed,
        "p50": pct(latencies, 50) * 1000,
        "p99": pct(latencies, 99) * 1000,
        "statuses": dict(statuses),
        "wrong": wrong,
        "server_cpu": (b.server - a.server) / elapsed,
        "pg_cpu": pg / elapsed,
        "client_cpu": (b.client - a.client) / elapsed,
        "machine_busy": (b.machine[0] - a.machine[0]) / (b.machine[1] - a.machine[1]),
        "server_us": (b.server - a.server) / n * 1e6 if n else float("nan"),
        "pg_us": pg / n * 1e6 if n else float("nan"),
    }


# -- checks and the breakdown (this process) --------------------------------------------------


async def login_and_check(ports: dict[str, int], plan: Plan) -> str:
    """Log li in over the API; check the three documents agree. Returns the bearer token."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"http://{HOST}:{ports['product']}/api/v1/sessions",
            json={"login": plan.login, "password": plan.password},
        ) as r:
            if r.status != 201:
                raise SystemExit(f"login failed: {r.status} {await r.text()}")
            token: str = (await r.json())["token"]
        docs = {}
        for target in TARGETS:
            headers = {"Authorization": f"Bearer {token}"} if target == "product" else {}
            async with http.get(f"http://{HOST}:{ports[target]}{PATH}", headers=headers) as r:
                if r.status != 200:
                    raise SystemExit(f"{target}: {r.status} {await r.text()}")
                docs[target] = await r.read()
        async with http.get(f"http://{HOST}:{ports['product']}{PATH}") as r:
            if r.status != 401:
                raise SystemExit(f"product without a token answered {r.status}, not 401")
    parsed = {t: json.loads(d) for t, d in docs.items()}
    for doc in parsed.values():
        for p in doc["parcels"]:
            p.pop("fee_due_cents")  # grows with the clock between the two requests
    if parsed["product"] != parsed["raw"] or parsed["raw"] != parsed["bare"]:
        raise SystemExit("the product, raw and bare documents differ")
    count = len(parsed["product"]["parcels"])
    if count != plan.rows:
        raise SystemExit(f"the product lists {count} parcels, expected {plan.rows}")
    states = Counter(p["state"] for p in parsed["product"]["parcels"])
    sizes = {t: len(d) for t, d in docs.items()}
    print(
        f"checked: login 201, no token 401; {count} parcels {dict(states)}; "
        f"documents equal, bytes {sizes}"
    )
    return token


async def _per_call(fn: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of ``fn``, after a few warm-up calls."""
    for _ in range(20):
        await fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await fn()
    return (
        (time.process_time() - cpu) / n * 1e6,
        (time.perf_counter() - wall) / n * 1e6,
    )


async def breakdown(plan: Plan, token: str, n: int) -> list[tuple[str, float, float]]:
    """Each step of the product's path, timed one call at a time: (step, CPU µs, wall µs)."""
    # The handler's own statement and helpers (private, imported here only to time them).
    from cloud_sync.service.routes_parcels import (
        _PARCEL_COLUMNS,
        _PARCEL_FROM,
        _PARCELS,
        ParcelsOut,
        ParcelsQuery,
        _page_filter,
        _parcel_out,
    )

    db = Database(plan.url)
    pool = await asyncpg.create_pool(pg_url(plan.name), min_size=1, max_size=2)
    clock = SafeClock()
    auth = Authenticator(
        db,
        PasswordHasher.fast_for_tests(),
        LoginLimiter(per_login=5, per_ip=20, window_s=300),
        clock,
        token_ttl_s=86_400,
    )
    header = f"Bearer {token}"
    principal = await auth.authenticate(header)
    q = ParcelsQuery.model_validate({})
    now = clock.now_ms()
    p_cols = _PARCEL_COLUMNS
    stmt_args = (_PARCEL_FROM, _page_filter(principal, q))

    def statement() -> Any:
        return (
            select(*p_cols)
            .select_from(stmt_args[0])
            .where(*stmt_args[1])
            .order_by(_PARCELS.c.created_at.desc(), _PARCELS.c.id.desc())
            .limit(q.limit + 1)
        )

    async with db.autocommit() as conn:
        rows = (await conn.execute(statement())).all()
    raw_rows = await pool.fetch(RAW_SQL, plan.site_id, list(plan.unit_ids), PAGE + 1)

    async def authenticate() -> None:
        await auth.authenticate(header)

    async def query_core() -> None:
        async with db.autocommit() as conn:
            (await conn.execute(statement())).all()

    async def query_raw() -> None:
        async with pool.acquire() as conn:
            await conn.fetch(RAW_SQL, plan.site_id, list(plan.unit_ids), PAGE + 1)

    async def parse_query() -> None:
        ParcelsQuery.model_validate({})

    async def policy() -> None:
        for row in rows:
            decide(
                principal,
                Action.PARCEL_READ,
                ParcelRes(row.site_id, row.unit_id, row.courier_account_id, row),
            )

    async def serialize() -> None:
        out = ParcelsOut(parcels=[_parcel_out(row, now) for row in rows], next_before=None)
        web.Response(text=out.model_dump_json(), content_type="application/json")

    async def serialize_raw() -> None:
        web.Response(body=raw_document(raw_rows, now, PAGE), content_type="application/json")

    steps = [
        ("authenticate (token → principal, 1 query)", authenticate),
        ("query parse (ParcelsQuery)", parse_query),
        ("list query, SQLAlchemy Core on db.autocommit()", query_core),
        ("policy: decide(parcel.read) per parcel", policy),
        ("serialize: ParcelOut × rows, model_dump_json", serialize),
        ("  (raw) the same query on an asyncpg pool", query_raw),
        ("  (raw) dicts + json.dumps", serialize_raw),
    ]
    results = []
    try:
        for name, fn in steps:
            cpu, wall = await _per_call(fn, n)
            results.append((name, cpu, wall))
    finally:
        await pool.close()
        await db.dispose()
    return results


# -- main -------------------------------------------------------------------------------------


def _slice(res: dict[str, Any]) -> str:
    return (
        f"{res['rps']:8.0f} req/s  p50 {res['p50']:6.2f} ms  p99 {res['p99']:6.2f} ms  "
        f"server {res['server_cpu'] * 100:3.0f} % ({res['server_us']:5.0f} µs/req)  "
        f"pg {res['pg_cpu'] * 100:3.0f} % ({res['pg_us']:4.0f} µs/req)  "
        f"client {res['client_cpu'] * 100:3.0f} %  machine {res['machine_busy'] * 100:3.0f} %  "
        f"new PG sessions {res['sessions']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument("--rounds", type=int, default=3, help="windows per target, interleaved")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--rows", type=int, default=20, help="the resident's parcels (<= 50)")
    parser.add_argument("--others", type=int, default=200, help="other units' parcels")
    parser.add_argument("--profile", action="store_true", help="cProfile one more product window")
    args = parser.parse_args()
    if not 1 <= args.rows <= PAGE:
        parser.error(f"--rows must be 1..{PAGE} (one page)")

    from bench.brokers import PrivateMosquitto

    ctx = mp.get_context("spawn")
    tmp = tempfile.TemporaryDirectory()
    name = asyncio.run(create_database())
    broker: PrivateMosquitto | None = None
    processes: list[tuple[Any, Connection]] = []
    try:
        try:
            broker = PrivateMosquitto()
            broker_port = broker.port
        except RuntimeError:
            broker_port = 1  # nothing listens: the link keeps retrying with back-off
        t0 = time.perf_counter()
        plan = asyncio.run(provision(name, Path(tmp.name) / "keys", args.rows, args.others))
        print(f"database {name}: migrated and seeded in {time.perf_counter() - t0:.1f} s")

        srv_conn, child = ctx.Pipe()
        server = ctx.Process(target=serve, args=(child, plan, broker_port), name="api-servers")
        server.start()
        processes.append((server, srv_conn))
        if not srv_conn.poll(60):
            raise SystemExit("the servers did not start")
        ports: dict[str, int] = srv_conn.recv()
        token = asyncio.run(login_and_check(ports, plan))

        cli_conn, child = ctx.Pipe()
        client = ctx.Process(target=load, args=(child,), name="load-generator")
        client.start()
        processes.append((client, cli_conn))
        assert server.pid is not None

        def job(target: str, duration: float) -> dict[str, Any]:
            before = asyncio.run(sessions_opened(name))
            headers = {"Authorization": f"Bearer {token}"} if target == "product" else {}
            cli_conn.send(
                {
                    "url": f"http://{HOST}:{ports[target]}{PATH}",
                    "headers": headers,
                    "concurrency": args.concurrency,
                    "warmup": args.warmup,
                    "duration": duration,
                    "expect": plan.rows,
                    "server_pid": server.pid,
                    "database": name,
                }
            )
            res: dict[str, Any] = cli_conn.recv()
            time.sleep(0.6)  # PostgreSQL flushes its statistics about every 0.5-1 s
            # Less the one this count itself opened.
            res["sessions"] = max(0, asyncio.run(sessions_opened(name)) - before - 1)
            return res

        print(
            f"GET {PATH}: {args.concurrency} keep-alive connections, {args.warmup:g} s warm-up + "
            f"{args.duration:g} s measured per window; servers in process {server.pid}, "
            f"load generator in process {client.pid}; {os.cpu_count()} CPUs"
        )
        results: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
        for r in range(args.rounds):
            order = TARGETS[r % 3 :] + TARGETS[: r % 3]
            for target in order:
                res = job(target, args.duration)
                results[target].append(res)
                print(f"  round {r + 1} {target:7s} {_slice(res)}")
                if res["wrong"]:
                    print(f"    !! {res['wrong']} bad responses, statuses {res['statuses']}")

        rps = {
            t: sum(x["requests"] for x in v) / sum(x["elapsed"] for x in v)
            for t, v in results.items()
        }
        lat = {
            t: (statistics.median(x["p50"] for x in v), max(x["p99"] for x in v))
            for t, v in results.items()
        }
        cpu = {t: statistics.median(x["server_us"] for x in v) for t, v in results.items()}
        bad = sum(x["wrong"] for v in results.values() for x in v)
        per_round = [
            (results["product"][i]["rps"] / results["raw"][i]["rps"],
             results["raw"][i]["rps"] / results["bare"][i]["rps"])
            for i in range(args.rounds)
        ]  # fmt: skip
        print("summary (all rounds):")
        for t in TARGETS:
            print(
                f"  {t:7s} {rps[t]:8.0f} req/s  p50 {lat[t][0]:6.2f} ms (median of rounds)  "
                f"p99 {lat[t][1]:6.2f} ms (worst round)  server CPU {cpu[t]:5.0f} µs/req"
            )
        ratio, context = rps["product"] / rps["raw"], rps["raw"] / rps["bare"]
        print(
            f"  product/raw = {ratio:.2f} (bar >= {BAR:.2f}; per round "
            + ", ".join(f"{a:.2f}" for a, _ in per_round)
            + f")  raw/bare = {context:.2f} (context ~{CONTEXT:.2f}; per round "
            + ", ".join(f"{b:.2f}" for _, b in per_round)
            + ")"
        )
        print(
            f"  server CPU per request raw/product = {cpu['raw'] / cpu['product']:.2f}, "
            f"bare/raw = {cpu['bare'] / cpu['raw']:.2f} (the same ratios when the server is "
            "CPU-bound, independent of how much CPU the machine's other load leaves it)"
        )
        verdict = "PASS" if ratio >= BAR and not bad else "MISS"
        print(f"  {verdict}: product at {ratio * 100:.0f} % of raw asyncpg, bar {BAR * 100:.0f} %")
        if bad:
            print(f"  !! {bad} responses were not 200 with {plan.rows} parcels: figures invalid")

        steps = asyncio.run(breakdown(plan, token, 400))
        print("where the product's time goes (one call at a time, this process, µs per request):")
        for step, c, w in steps:
            print(f"  {step:50s} CPU {c:7.1f}  wall {w:7.1f}")
        product_steps = sum(c for s, c, _ in steps if not s.startswith("  (raw)"))
        raw_steps = sum(c for s, c, _ in steps if s.startswith("  (raw)"))
        print(
            f"  sum of product steps {product_steps:.0f} µs CPU vs raw steps {raw_steps:.0f} µs; "
            f"server CPU per request under load: product {cpu['product']:.0f}, "
            f"raw {cpu['raw']:.0f}, bare {cpu['bare']:.0f} µs"
        )

        if args.profile:
            srv_conn.send("profile")
            srv_conn.recv()
            res = job("product", args.duration)
            srv_conn.send(("profile-stop", res["completed"]))
            print(f"profiled product window: {_slice(res)}")
            print(srv_conn.recv())
    finally:
        for process, conn in reversed(processes):
            conn.send(None)
            process.join(15)
            if process.is_alive():
                process.terminate()
        if broker is not None:
            broker.stop()
        asyncio.run(drop_database(name))
        tmp.cleanup()


if __name__ == "__main__":
    main()
