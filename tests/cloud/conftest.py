"""Shared fixtures of the cloud tests: a migrated database, keys, a hasher, a seeded community.

``seeded`` is one small community, committed, that API tests can log in to::

    site "Test Court"
    ├── building "1"  ── unit "1-101" ── Li (owner, 13812348000, login li)
    │                 │               └─ electricity meter m-1-101 (gateway gw-test)
    │                 └─ door b1-main (gateway gw-test)
    ├── building "2"  ── unit "2-101" ── Zhang (tenant, 13987654321, login zhang)
    │                 │               └─ water meter m-2-101 (gateway gw-test)
    │                 └─ door b2-main (gateway gw-test)
    ├── electricity meter m-common, not assigned to a unit (gateway gw-test)
    ├── locker bank "A" (gateway gw-test, building 1): compartments 1 mini, 2 S, 3 M, 4 L, 5 S, 6 M
    │   └── compartment 2 occupied: a parcel waiting for 1-101 (Li), deposited by "courier"
    │       (code_n 0, tracking SF0000000001), with Li's "parcel.waiting" notification
    ├── staff logins: engineer, admin, auditor
    └── couriers serving the site: courier (company "SF"), other_courier (company "ZTO")

Every password is ``{login}-password`` (see :data:`Seeded.logins`). ``site_factory(prefix)`` seeds
another such community whose logins and gateway id carry ``prefix``, for cross-site tests.

The second part of this file starts the API service on the real broker and database, with a fake
gateway and an observer, for the HTTP API, ingest and dispatch tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cloud_sync.protocol import (
    Ack,
    CommandBody,
    Event,
    EventBatch,
    GatewayTopics,
    Message,
    MqttLink,
    verify_command,
)
from cloud_sync.service import BrokerSettings, CloudSettings, create_app, directory, provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.migrate import upgrade
from cloud_sync.service.passwords import PasswordHasher
from cloud_sync.service.state import LINK
from cloud_sync.service.tables import Notification, Parcel

LI_NAME, LI_PHONE = "李小红", "13812348000"
ZHANG_NAME, ZHANG_PHONE = "张伟", "13987654321"
STAFF_ROLES = ("engineer", "admin", "auditor")
#: The seeded couriers: login short name → company. Both serve the seeded site.
COURIERS = {"courier": "SF", "other_courier": "ZTO"}
BANK_COMPARTMENTS = ((1, "mini"), (2, "S"), (3, "M"), (4, "L"), (5, "S"), (6, "M"))
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class SeededLogin:
    """One account of a seeded community."""

    login: str
    password: str
    role: str
    account_id: int


@dataclass(frozen=True)
class Seeded:
    """The ids of a seeded community; ``logins`` is keyed by li, zhang, staff roles, couriers."""

    site_id: int
    building1_id: int
    building2_id: int
    unit1_id: int  # "1-101" in building 1
    unit2_id: int  # "2-101" in building 2
    li_id: int  # resident: owner of 1-101
    zhang_id: int  # resident: tenant of 2-101
    gateway_id: str
    door_b1_id: int
    door_b2_id: int
    logins: Mapping[str, SeededLogin]
    meter_li_id: int  # electricity, unit 1-101
    meter_zhang_id: int  # water, unit 2-101
    meter_common_id: int  # electricity, no unit
    bank_id: int  # locker bank "A"
    parcel_id: str  # waiting for 1-101 in bank A, compartment 2, deposited by "courier"
    door_b1_local: str = "b1-main"
    door_b2_local: str = "b2-main"
    meter_li_local: str = "m-1-101"
    meter_zhang_local: str = "m-2-101"
    meter_common_local: str = "m-common"
    unit1_label: str = "1-101"
    unit2_label: str = "2-101"
    li_name: str = LI_NAME
    li_phone: str = LI_PHONE
    zhang_name: str = ZHANG_NAME
    zhang_phone: str = ZHANG_PHONE
    bank_local: str = "A"
    parcel_compartment: int = 2
    parcel_tracking: str = "SF0000000001"
    courier_company: str = COURIERS["courier"]
    other_courier_company: str = COURIERS["other_courier"]


SiteFactory = Callable[..., Awaitable[Seeded]]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty cloud database (PostgreSQL when available)."""
    await upgrade(database_url)
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def aiohttp_client(db: Database, aiohttp_client: Any) -> Any:
    """pytest-aiohttp's client factory, made to depend on ``db``.

    Fixtures are torn down in reverse order of set-up, so this guarantees that every app under
    test has stopped (its background tasks and their sessions) before ``db`` is disposed; else
    an app stopping later opens connections on the disposed engine that nobody closes.
    """
    return aiohttp_client


@pytest.fixture
def cloud_keys(tmp_path: Path) -> CloudKeys:
    """Fresh cloud keys in a private directory."""
    return CloudKeys.load_or_create(tmp_path / "cloud-keys")


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    """A password hasher with cheap parameters."""
    return PasswordHasher.fast_for_tests()


@pytest.fixture
def site_factory(db: Database, cloud_keys: CloudKeys, hasher: PasswordHasher) -> SiteFactory:
    """Seed (and commit) a community: ``await site_factory(prefix="s2-", name="Other Court")``."""

    async def make(prefix: str = "", name: str = "Test Court") -> Seeded:
        async with db.session() as s:
            site = await provisioning.create_site(s, name)
            assert site.id is not None
            sid = site.id
            b1 = await provisioning.create_building(s, sid, "1")
            b2 = await provisioning.create_building(s, sid, "2")
            assert b1.id is not None
            assert b2.id is not None
            u1 = await provisioning.create_unit(s, sid, b1.id, "1-101")
            u2 = await provisioning.create_unit(s, sid, b2.id, "2-101")
            assert u1.id is not None
            assert u2.id is not None
            li = await directory.create_resident(s, cloud_keys, sid, LI_NAME, LI_PHONE)
            zhang = await directory.create_resident(s, cloud_keys, sid, ZHANG_NAME, ZHANG_PHONE)
            assert li.id is not None
            assert zhang.id is not None
            await provisioning.add_membership(s, sid, li.id, u1.id, "owner")
            await provisioning.add_membership(s, sid, zhang.id, u2.id, "tenant")
            people = {"li": ("resident", li.id), "zhang": ("resident", zhang.id)}
            people.update({role: (role, None) for role in STAFF_ROLES})
            logins: dict[str, SeededLogin] = {}
            for short, (role, resident_id) in people.items():
                login = prefix + short
                password = f"{login}-password"
                account = await provisioning.create_account(
                    s,
                    hasher,
                    site_id=sid,
                    login=login,
                    password=password,
                    role=role,
                    resident_id=resident_id,
                )
                assert account.id is not None
                logins[short] = SeededLogin(login, password, role, account.id)
            for short, company in COURIERS.items():
                login, password = prefix + short, f"{prefix}{short}-password"
                account = await provisioning.create_courier(
                    s, hasher, site_id=sid, login=login, password=password, company=company
                )
                assert account.id is not None
                logins[short] = SeededLogin(login, password, "courier", account.id)
            gateway = await provisioning.create_gateway(s, sid, f"{prefix}gw-test", "Gate house")
            doors = []
            for building_id, local_id in ((b1.id, "b1-main"), (b2.id, "b2-main")):
                door = await provisioning.create_door(
                    s,
                    site_id=sid,
                    gateway_id=gateway.id,
                    building_id=building_id,
                    local_id=local_id,
                    name=f"Building {local_id[1]} main entrance",
                )
                assert door.id is not None
                doors.append(door.id)
            meters = []
            for local_id, kind, unit_id in (
                ("m-1-101", "electricity", u1.id),
                ("m-2-101", "water", u2.id),
                ("m-common", "electricity", None),
            ):
                meter = await provisioning.create_meter(
                    s, sid, gateway.id, local_id, kind, unit_id=unit_id
                )
                assert meter.id is not None
                meters.append(meter.id)
            bank = await provisioning.create_locker_bank(
                s,
                sid,
                gateway.id,
                "A",
                name="Building 1 lobby",
                building_id=b1.id,
                compartments=BANK_COMPARTMENTS,
            )
            assert bank.id is not None
            parcel_id = await _seed_waiting_parcel(
                s, sid, gateway.id, bank.id, u1.id, li.id, logins["courier"].account_id
            )
            await s.commit()
        return Seeded(
            site_id=sid,
            building1_id=b1.id,
            building2_id=b2.id,
            unit1_id=u1.id,
            unit2_id=u2.id,
            li_id=li.id,
            zhang_id=zhang.id,
            gateway_id=gateway.id,
            door_b1_id=doors[0],
            door_b2_id=doors[1],
            logins=logins,
            meter_li_id=meters[0],
            meter_zhang_id=meters[1],
            meter_common_id=meters[2],
            bank_id=bank.id,
            parcel_id=parcel_id,
        )

    return make


async def _seed_waiting_parcel(
    s: Any, site_id: int, gateway_id: str, bank_id: int, unit_id: int, li_id: int, courier: int
) -> str:
    """A parcel in compartment 2 for unit 1-101, as the inbox leaves it after parcel.deposited."""
    now = time.time_ns() // 1_000_000
    deposited = now - 2 * HOUR_MS
    parcel_id = uuid.uuid4().hex
    s.add(
        Parcel(
            id=parcel_id,
            site_id=site_id,
            gateway_id=gateway_id,
            bank_id=bank_id,
            compartment=2,
            size="S",
            unit_id=unit_id,
            unit_label="1-101",
            courier_account_id=courier,
            company=COURIERS["courier"],
            tracking="SF0000000001",
            state="waiting",
            code_n=0,
            via="command",
            created_at=deposited - 1000,
            deposited_at=deposited,
            updated_at=deposited,
        )
    )
    # Compartment 2 stays as its gateway reports it (in service, `free`): the cloud knows it
    # holds a parcel from the parcel itself.
    s.add(
        Notification(
            site_id=site_id,
            resident_id=li_id,
            kind="parcel.waiting",
            body={"parcel": parcel_id, "bank": "Building 1 lobby", "compartment": 2},
            created_at=deposited,
        )
    )
    await s.flush()
    return parcel_id


@pytest.fixture
async def seeded(site_factory: SiteFactory) -> Seeded:
    """The seeded community of this module's docstring."""
    return await site_factory()


# -- the API service: an app on the real broker and database, a fake gateway, an observer -----
# (added for the HTTP API, ingest and dispatch tests)

ApiFactory = Callable[..., Awaitable[TestClient]]


class FakeClock:
    """A clock the test moves by hand (starts at the real time)."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def topic_root() -> str:
    """A topic root of this test's own, so tests sharing the machine's broker never cross-talk."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cloud_settings(
    database_url: str, tmp_path: Path, broker: Any, topic_root: str
) -> CloudSettings:
    """Settings for an API app on this test's database, broker and topic root."""
    return CloudSettings(
        database_url=database_url,
        key_dir=tmp_path / "cloud-keys",
        broker=BrokerSettings(host=broker.host, port=broker.port, protocol=broker.protocol),
        topic_root=topic_root,
        argon2="fast",
    )


@pytest.fixture
def make_api(
    aiohttp_client: Any,
    db: Database,
    cloud_keys: CloudKeys,
    hasher: PasswordHasher,
    cloud_settings: CloudSettings,
) -> ApiFactory:
    """``await make_api(clock=..., **setting_overrides)``: a test client of a started app."""

    async def make(clock: Any = None, wait_for_broker: bool = True, **overrides: Any) -> TestClient:
        settings = CloudSettings.model_validate({**cloud_settings.model_dump(), **overrides})
        app = create_app(settings, database=db, keys=cloud_keys, hasher=hasher, clock=clock)
        client: TestClient = await aiohttp_client(app)
        if wait_for_broker:
            await app[LINK].wait_connected(10)
        return client

    return make


@pytest.fixture
async def api(make_api: ApiFactory, seeded: Seeded) -> TestClient:
    """The API on the seeded community."""
    return await make_api()


LoginFn = Callable[[TestClient, str], Awaitable[dict[str, str]]]


@pytest.fixture
def login(seeded: Seeded) -> LoginFn:
    """``headers = await login(client, "li")``: log a seeded account in, return auth headers."""

    async def do(client: TestClient, who: str) -> dict[str, str]:
        account = seeded.logins[who]
        resp = await client.post(
            "/api/v1/sessions", json={"login": account.login, "password": account.password}
        )
        assert resp.status == 201, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}

    return do


async def _live(link: MqttLink, topic: str) -> None:
    """Return once ``link``'s subscription covering ``topic`` delivers (a probe round trip)."""
    while True:
        await link.publish(topic, b"probe", qos=1)
        try:
            msg = await asyncio.wait_for(link.get(), 0.5)
        except TimeoutError:
            continue
        if msg.topic == topic:
            return


class FakeGateway:
    """A gateway written for the tests: verifies commands, sends batches, waits for acks."""

    def __init__(self, broker: Any, root: str, gateway_id: str, keys: CloudKeys) -> None:
        self.topics = GatewayTopics(gateway_id, root)
        self.gateway_id = gateway_id
        self._keys = {keys.signing.kid: keys.signing.verify_key}
        self.link = MqttLink(
            broker.host, broker.port, f"fake-{uuid.uuid4().hex[:8]}", protocol=broker.protocol
        )
        self.raw_commands: asyncio.Queue[bytes] = asyncio.Queue()
        self.acks: asyncio.Queue[Ack] = asyncio.Queue()
        self.seq = 0
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.link.start()
        await self.link.wait_connected(10)
        self.link.subscribe(f"{self.topics.base}/down/#")
        await _live(self.link, f"{self.topics.base}/down/probe")
        self._pump = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await self.link.stop()

    async def _run(self) -> None:
        async for msg in self.link.messages():
            if msg.topic == self.topics.down_cmd:
                self.raw_commands.put_nowait(msg.payload)
            elif msg.topic == self.topics.down_ack:
                self.acks.put_nowait(Ack.decode(msg.payload))

    async def command(self, within_s: float = 5) -> CommandBody:
        """The next command, verified as the real gateway would (signature, binding, window)."""
        raw = await asyncio.wait_for(self.raw_commands.get(), within_s)
        return verify_command(raw, self._keys, self.gateway_id, time.time_ns() // 1_000_000)

    def event(self, type_: str, data: dict[str, Any], seq: int | None = None) -> Event:
        """An event with the next sequence number (or ``seq``)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        return Event(uuid.uuid4().hex, seq, time.time_ns() // 1_000_000, type_, data)

    async def publish_raw(self, payload: bytes) -> None:
        await self.link.publish(self.topics.up_events, payload, qos=1)

    async def send(self, *events: Event, gateway: str | None = None) -> Ack:
        """Publish a batch until the cloud acks every one of its seqs (as an outbox would)."""
        batch = EventBatch(gateway or self.gateway_id, tuple(events))
        payload = batch.encode()
        for _ in range(40):
            await self.publish_raw(payload)
            deadline = asyncio.get_running_loop().time() + 0.5
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    ack = await asyncio.wait_for(self.acks.get(), left)
                except TimeoutError:
                    break
                if all(ack.covers(e.seq) for e in events):
                    return ack
        raise AssertionError("the cloud never acknowledged the batch")


GatewayFactory = Callable[..., Awaitable[FakeGateway]]


@pytest.fixture
async def fake_gateway_factory(
    broker: Any, topic_root: str, cloud_keys: CloudKeys
) -> AsyncIterator[GatewayFactory]:
    """``await fake_gateway_factory(gateway_id)``: a started fake gateway."""
    made: list[FakeGateway] = []

    async def make(gateway_id: str) -> FakeGateway:
        gw = FakeGateway(broker, topic_root, gateway_id, cloud_keys)
        await gw.start()
        made.append(gw)
        return gw

    yield make
    for gw in made:
        await gw.stop()


@pytest.fixture
async def fake_gateway(fake_gateway_factory: GatewayFactory, seeded: Seeded) -> FakeGateway:
    """The seeded community's gateway, faked."""
    return await fake_gateway_factory(seeded.gateway_id)


class Observer:
    """An independent MQTT client that records everything under the test's topic root."""

    def __init__(self, link: MqttLink, root: str) -> None:
        self.link = link
        self.root = root

    async def next_on(self, topic: str, within_s: float = 5) -> Message:
        """The next message on ``topic`` (others are skipped)."""
        while True:
            msg = await asyncio.wait_for(self.link.get(), within_s)
            if msg.topic == topic:
                return msg


@pytest.fixture
async def observer(broker: Any, topic_root: str) -> AsyncIterator[Observer]:
    """Watches ``{root}/#`` on its own connection."""
    link = MqttLink(
        broker.host, broker.port, f"obs-{uuid.uuid4().hex[:8]}", protocol=broker.protocol
    )
    await link.start()
    await link.wait_connected(10)
    link.subscribe(f"{topic_root}/#")
    await _live(link, f"{topic_root}/observer/probe")
    try:
        yield Observer(link, topic_root)
    finally:
        await link.stop()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock the test moves by hand, starting at the real time."""
    return FakeClock()
