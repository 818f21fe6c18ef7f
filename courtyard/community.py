"""A whole community on one machine: the cloud, a gateway and simulated doors and devices.

The composition behind ``courtyard demo``, the end-to-end tests and the unlock benchmark, so that
all three exercise exactly the same wiring. Everything binds 127.0.0.1; every database and key
file lives under ``data_dir``.

With ``rs485=True`` the gateway also gets three simulated RS-485 lines behind ``socket://``:

* ``meters-1``: six DL/T 645 electricity meters ``em-0001``…``em-0006`` (2400 8E1, two prepaid);
* ``water-1``: four Modbus RTU water meters ``wm-01``…``wm-04``, unit ids 1…4, register map
  ``water`` (9600 8N1, the usual water-meter line);
* ``lockers-a``: one Kerong lock board ``bank-a-0`` (19200 8N1), whose 16 locks are the
  compartments 1…16 of the plan's locker bank ``A`` (lock n is compartment n), with the bank's
  terminal ``term-a`` played by a :class:`~devices.terminal.TerminalSimulator` on the site broker.
  The gateway's site code key is written to ``gateway/keys/parcel-code.key`` (0600) from the
  cloud's key (:meth:`CloudKeys.gateway_code_key`), as provisioning would. The board is served
  behind a :class:`Cabinet` (:attr:`Community.cabinet`), so a scenario can play the person at the
  lockers (put a parcel in, shut a door, count pulses) while the bus thread serves the gateway.

With ``attended_lockers=True`` (the demo) a :class:`~courtyard.locker_attendant.LockerAttendant`
plays the couriers and residents at the board: a door left open a few seconds is used (a parcel
put in, or taken out) and shut.

With ``cuttable_cloud=True`` the gateway reaches the cloud broker through a loopback TCP relay
that :meth:`Community.cut_cloud` severs and :meth:`Community.restore_cloud` reconnects: the site's
internet link going down, while the gateway, the site broker, the devices and the cloud keep
running.

The plan's meters (:attr:`~courtyard.seed.CommunityPlan.meters`, the same ids) are registered
with the cloud, each mapped to its unit, **only with** ``rs485=True``: without the lines no
gateway reads them, and a meter list of meters that never report would only confuse. A data
directory first seeded without RS-485 therefore has no meters registered; readings from a later
run with RS-485 still arrive, and the cloud files such meters as unassigned. The plan's locker
banks are seeded on the same condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from aiohttp import web as aioweb
from sqlmodel import select

from cloud_sync.service.app import create_app
from cloud_sync.service.db import Database
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.migrate import upgrade
from cloud_sync.service.passwords import PasswordHasher
from cloud_sync.service.settings import BrokerSettings as CloudBroker
from cloud_sync.service.settings import CloudSettings
from cloud_sync.service.tables import Site
from courtyard.locker_attendant import LockerAttendant
from courtyard.seed import (
    DEMO_ELECTRICITY_METERS,
    DEMO_PREPAID_METERS,
    DEMO_WATER_METERS,
    CommunityAccount,
    CommunityPlan,
    LockerBankPlan,
    default_plan,
    electricity_meter_id,
    seed_community,
    water_meter_id,
)
from courtyard.simulate import (
    dlt645_devices,
    lockboard_devices,
    make_dlt645_framer,
    make_lockboard_framer,
    make_modbus_framer,
    modbus_devices,
)
from courtyard.web_mount import mount_pages
from devices.dlt645 import Dlt645Meter
from devices.door import Behaviour, DoorSimulator
from devices.lockboard import LockBoard
from devices.modbus import ModbusMeter
from devices.serialbus import BusServer
from devices.terminal import TerminalSimulator
from gateway import DoorSettings, Gateway, GatewaySettings
from gateway.settings import BrokerSettings as GatewayBroker
from gateway.settings import (
    BusSettings,
    CompartmentSettings,
    LockBoardSettings,
    LockerBankSettings,
    MeterSettings,
    ParcelRules,
    SiteBrokerSettings,
)
from trust import write_secret

__all__ = ["LOCKER_BOARD", "Cabinet", "Community"]

LOCKER_BOARD = "bank-a-0"
"""The lock board on line ``lockers-a``; its locks are the plan's locker bank's compartments."""


class Cabinet:
    """A simulated lock board behind a lock, so the bus thread and a scenario take turns.

    The bus calls :meth:`respond` (it is the line's device); the person at the lockers and the
    faults act on the board inside :meth:`hands`.
    """

    checksum_offset = -1
    """Where SUM sits in a reply (the bus simulator's BAD_CHECKSUM fault looks for it)."""

    def __init__(self, board: LockBoard) -> None:
        self.board = board
        self.address = board.address
        self._lock = threading.Lock()

    def respond(self, request: bytes, now: float) -> bytes | None:
        """The bus thread's entry (see :class:`devices.serialbus.BusDevice`)."""
        with self._lock:
            return self.board.respond(request, now)

    @contextlib.contextmanager
    def hands(self) -> Iterator[LockBoard]:
        """The board, held still while the caller acts on it."""
        with self._lock:
            yield self.board


class _LinkRelay:
    """A loopback TCP relay to the broker that can be cut: the gateway's internet link.

    While cut, every relayed connection is aborted (no DISCONNECT reaches the broker, so it
    publishes the gateway's last will) and new ones are closed as soon as they are accepted.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._cut = False
        self._pipes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        if self._cut:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, writer, up_writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        *ends: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            # One side ended: end both, as a dropped link would.
            for end in ends:
                self._pipes.discard(end)
                end.transport.abort()

    def cut(self) -> None:
        """Abort every relayed connection and refuse new ones until :meth:`restore`."""
        self._cut = True
        for end in list(self._pipes):
            end.transport.abort()
        self._pipes.clear()

    def restore(self) -> None:
        """Relay new connections again."""
        self._cut = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Community:
    """Cloud + gateway + door simulators, started and stopped together."""

    def __init__(
        self,
        data_dir: Path,
        *,
        broker_host: str,
        broker_port: int,
        broker_protocol: Literal["5", "3.1.1"],
        database_url: str | None = None,
        http_port: int = 0,
        plan: CommunityPlan | None = None,
        fast_passwords: bool = False,
        isolate_topics: bool = False,
        gateway_id: str = "gw-1",
        open_delay_ms: int = 2,
        walk_through_ms: int = 1500,
        command_ttl_ms: int = 30_000,
        pulse_ms: int = 3000,
        behaviour: Behaviour = Behaviour.WALK_THROUGH,
        rs485: bool = False,
        meter_interval_s: float = 30.0,
        cuttable_cloud: bool = False,
        attended_lockers: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.plan = plan or default_plan()
        self.broker = (broker_host, broker_port, broker_protocol)
        self.database_url = database_url or f"sqlite+aiosqlite:///{data_dir / 'cloud.db'}"
        self.http_port = http_port
        self.fast_passwords = fast_passwords
        # Tests share one broker: a unique topic root and site prefix keep communities apart.
        tag = uuid.uuid4().hex[:8] if isolate_topics else ""
        self.topic_root = f"cy{tag}"
        self.site_prefix = f"site{tag}"
        self.gateway_id = gateway_id
        self.open_delay_ms = open_delay_ms
        self.walk_through_ms = walk_through_ms
        self.command_ttl_ms = command_ttl_ms
        self.pulse_ms = pulse_ms
        self.behaviour = behaviour
        # Simulated RS-485 lines (DL/T 645 meters, a lock board) behind socket:// when asked.
        self.rs485 = rs485
        self.meter_interval_s = meter_interval_s
        self.buses: dict[str, BusServer] = {}
        self._meter_devices: list[Dlt645Meter] = []
        self._water_devices: list[ModbusMeter] = []
        self.cabinet: Cabinet | None = None
        """The lock board of line ``lockers-a`` (with ``rs485=True``, once started)."""
        # The gateway's cloud link through a relay that can be cut (module doc), when asked.
        self._relay = _LinkRelay(broker_host, broker_port) if cuttable_cloud else None
        self.attended_lockers = attended_lockers
        self._attendant: asyncio.Task[None] | None = None
        self.accounts: list[CommunityAccount] = []
        self.simulators: dict[str, DoorSimulator] = {}
        self.terminals: dict[str, TerminalSimulator] = {}
        self.gateway: Gateway | None = None
        self.cloud_app: aioweb.Application | None = None
        self._runner: aioweb.AppRunner | None = None
        self.url = ""

    # -- settings of the two sides -----------------------------------------------------------

    @property
    def key_dir(self) -> Path:
        """The cloud's key directory."""
        return self.data_dir / "cloud-keys"

    def cloud_settings(self) -> CloudSettings:
        """The cloud service's settings."""
        host, port, protocol = self.broker
        return CloudSettings(
            database_url=self.database_url,
            key_dir=self.key_dir,
            broker=CloudBroker(host=host, port=port, protocol=protocol),
            topic_root=self.topic_root,
            argon2="fast" if self.fast_passwords else "default",
            command_ttl_ms=self.command_ttl_ms,
        )

    @property
    def code_key_file(self) -> Path:
        """The gateway's site code key (pickup codes), written from the cloud's at start."""
        return self.data_dir / "gateway" / "keys" / "parcel-code.key"

    def _locker_bank(self) -> LockerBankPlan | None:
        """The plan's locker bank, placed on the line's one lock board (at most one bank)."""
        if not self.plan.lockers:
            return None
        if len(self.plan.lockers) > 1:
            raise ValueError("the community's lock board line carries one locker bank")
        bank = self.plan.lockers[0]
        if any(not 1 <= no <= 16 for no, _ in bank.compartments):
            raise ValueError(f"bank {bank.local_id}: compartments 1..16 fit the one lock board")
        return bank

    def _locker_settings(self) -> dict[str, Any]:
        bank = self._locker_bank()
        if bank is None:
            return {}
        compartments = tuple(
            CompartmentSettings.model_validate(
                {"no": no, "board": LOCKER_BOARD, "lock": no, "size": size}
            )
            for no, size in bank.compartments
        )
        return {
            "lockers": (
                LockerBankSettings(
                    id=bank.local_id,
                    name=bank.name,
                    terminal=bank.terminal,
                    compartments=compartments,
                ),
            ),
            "parcels": ParcelRules(code_key_file=self.code_key_file),
        }

    def _rs485_settings(self) -> dict[str, Any]:
        if not self.buses:
            return {}
        meters = self.buses["meters-1"]
        water = self.buses["water-1"]
        lockers = self.buses["lockers-a"]
        return {
            "buses": [
                BusSettings(name="meters-1", url=meters.url, baud=2400, parity="E"),
                BusSettings(name="water-1", url=water.url, baud=9600, parity="N"),
                BusSettings(name="lockers-a", url=lockers.url, baud=19200, parity="N"),
            ],
            "meters": [
                *(
                    MeterSettings(
                        id=electricity_meter_id(int(device.address)),
                        bus="meters-1",
                        protocol="dlt645",
                        address=device.address,
                        interval_s=self.meter_interval_s,
                        values=("energy_kwh", "voltage_v", "power_kw"),
                    )
                    for device in self._meter_devices
                ),
                *(
                    MeterSettings(
                        id=water_meter_id(device.unit_id),
                        bus="water-1",
                        protocol="modbus",
                        address=str(device.unit_id),
                        model="water",
                        interval_s=self.meter_interval_s,
                        values=("volume_m3", "flow_m3h", "valve"),
                    )
                    for device in self._water_devices
                ),
            ],
            "lockboards": [LockBoardSettings(id=LOCKER_BOARD, bus="lockers-a", board=0)],
            **self._locker_settings(),
        }

    def _start_buses(self) -> None:
        self._meter_devices = dlt645_devices(DEMO_ELECTRICITY_METERS, prepaid=DEMO_PREPAID_METERS)
        self._water_devices = modbus_devices(DEMO_WATER_METERS, "water")
        self.buses["meters-1"] = BusServer(make_dlt645_framer(), self._meter_devices, baud=2400)
        self.buses["water-1"] = BusServer(
            make_modbus_framer(), self._water_devices, baud=9600, char_bits=10
        )
        self.cabinet = Cabinet(lockboard_devices(1)[0])
        self.buses["lockers-a"] = BusServer(
            make_lockboard_framer(), [self.cabinet], baud=19200, char_bits=10
        )
        for server in self.buses.values():
            server.start()

    def gateway_settings(self) -> GatewaySettings:
        """The gateway's settings: the same broker serves as cloud and site broker here."""
        host, port, protocol = self.broker
        return GatewaySettings(
            id=self.gateway_id,
            data_dir=self.data_dir / "gateway",
            cloud=GatewayBroker(
                host=host,
                port=port if self._relay is None else self._relay.port,
                protocol=protocol,
            ),
            site=SiteBrokerSettings(
                host=host, port=port, protocol=protocol, prefix=self.site_prefix
            ),
            cloud_keys=[self.key_dir / "command-signing.key.pub"],
            doors=[
                DoorSettings(id=d.local_id, device=f"ctrl-{d.local_id}") for d in self.plan.doors
            ],
            topic_root=self.topic_root,
            **self._rs485_settings(),
        )

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate, seed (first start only), then start the cloud, the doors and the gateway."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        keys = CloudKeys.load_or_create(self.key_dir)
        await upgrade(self.database_url)
        hasher = PasswordHasher.fast_for_tests() if self.fast_passwords else PasswordHasher()
        await self._seed_once(keys, hasher)
        self.cloud_app = create_app(self.cloud_settings(), hasher=hasher, pages=mount_pages)
        self._runner = aioweb.AppRunner(self.cloud_app, access_log=None)
        await self._runner.setup()
        site = aioweb.TCPSite(self._runner, "127.0.0.1", self.http_port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        host, bport, _ = self.broker
        for door in self.plan.doors:
            sim = DoorSimulator(
                device=f"ctrl-{door.local_id}",
                host=host,
                port=bport,
                prefix=self.site_prefix,
                behaviour=self.behaviour,
                open_delay_ms=self.open_delay_ms,
                walk_through_ms=self.walk_through_ms,
            )
            sim.start()
            self.simulators[door.local_id] = sim
        if self.rs485:
            self._start_buses()
            self._start_lockers(keys)
            if self.attended_lockers and self.cabinet is not None:
                self._attendant = asyncio.create_task(LockerAttendant(self.cabinet).run())
        if self._relay is not None:
            await self._relay.start()
        self.gateway = Gateway(self.gateway_settings())
        await self.gateway.start()

    def _start_lockers(self, keys: CloudKeys) -> None:
        """The gateway's site code key (as provisioning writes it) and the bank's terminal."""
        bank = self._locker_bank()
        if bank is None:
            return
        write_secret(self.code_key_file, keys.gateway_code_key(self.gateway_id))
        if bank.terminal is not None:
            host, port, _ = self.broker
            sim = TerminalSimulator(
                device=bank.terminal, host=host, port=port, prefix=self.site_prefix
            )
            sim.start()
            self.terminals[bank.terminal] = sim

    async def restart_gateway(self) -> Gateway:
        """Stop the gateway and start a new one on the same data directory (a process restart)."""
        if self.gateway is not None:
            await self.gateway.stop()
        self.gateway = Gateway(self.gateway_settings())
        await self.gateway.start()
        return self.gateway

    def cut_cloud(self) -> None:
        """The site's internet link goes down: the gateway's connection to the cloud broker is
        aborted and cannot be made again until :meth:`restore_cloud`. The gateway, the site
        broker, the devices and the cloud keep running (needs ``cuttable_cloud=True``)."""
        if self._relay is None:
            raise RuntimeError("a community made without cuttable_cloud=True cannot be cut")
        self._relay.cut()

    def restore_cloud(self) -> None:
        """The site's internet link is back: the gateway may reconnect (with its back-off)."""
        if self._relay is None:
            raise RuntimeError("a community made without cuttable_cloud=True cannot be cut")
        self._relay.restore()

    async def stop(self) -> None:
        """Stop everything that :meth:`start` started, in reverse order."""
        if self.gateway is not None:
            await self.gateway.stop()
        if self._attendant is not None:
            self._attendant.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._attendant
        if self._relay is not None:
            await self._relay.stop()
        for sim in self.simulators.values():
            sim.stop()
        for terminal in self.terminals.values():
            await asyncio.to_thread(terminal.stop)
        for server in self.buses.values():
            server.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Community:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def account(self, login: str) -> CommunityAccount:
        """The seeded account with ``login``."""
        return next(a for a in self.accounts if a.login == login)

    # -- seeding -------------------------------------------------------------------------------

    @property
    def accounts_file(self) -> Path:
        """Where the seeded logins are written (mode 0600)."""
        return self.data_dir / "demo-accounts.json"

    async def _seed_once(self, keys: CloudKeys, hasher: PasswordHasher) -> None:
        db = Database(self.database_url)
        try:
            async with db.session() as session:
                existing = (await session.execute(select(Site))).scalars().first()
            if existing is not None and self.accounts_file.exists():
                raw = json.loads(self.accounts_file.read_text("utf-8"))
                self.accounts = [CommunityAccount(**a) for a in raw["accounts"]]
                return
            if existing is not None:
                raise RuntimeError(
                    f"{self.database_url} is already seeded but {self.accounts_file} is missing"
                )
            # Meters and lockers are registered only when the RS-485 lines that serve them run
            # (module doc).
            plan = (
                self.plan if self.rs485 else dataclasses.replace(self.plan, meters=(), lockers=())
            )
            async with db.session() as session:
                self.accounts = await seed_community(
                    session,
                    keys,
                    hasher,
                    plan,
                    gateway_id=self.gateway_id,
                    pulse_ms=self.pulse_ms,
                )
                await session.commit()
        finally:
            await db.dispose()
        payload = {
            "url_hint": "see the URL printed at start",
            "accounts": [asdict(a) for a in self.accounts],
        }
        write_secret(self.accounts_file, json.dumps(payload, ensure_ascii=False, indent=2).encode())
