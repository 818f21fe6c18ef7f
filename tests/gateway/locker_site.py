"""A parcel locker site for tests: simulated lock boards on a simulated line, the gateway's side.

Real Kerong frames travel through :class:`devices.serialbus.BusServer` and a real
:class:`gateway.bus.BusOwner`; above them run :class:`gateway.lockers.Lockers`,
:class:`gateway.locker_banks.LockerBanks`, :class:`gateway.parcels.Parcels` and
:class:`gateway.locker_watch.LockerWatch` on a real store and outbox, with an injectable wall
clock (fees, retention, lockouts and time-outs without waiting for hours). Tests drive the watch
one pass at a time (:meth:`LockerSite.poll`), so nothing depends on sleeping.

The bank ``A``::

    board A-1 (address 1): no 1 S (lock 1), no 8 M (lock 2)
    board A-0 (address 0): no 2 S (lock 1), no 3 S (lock 2), no 4 S (lock 3),
                           no 5 M (lock 4), no 6 M (lock 5), no 7 L (lock 6)

Board A-1 holds the smallest S compartment, so a deposit moves to board A-0 when A-1 is offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_sync.protocol.pickup_code import derive_code
from devices import lockboard
from devices.lockboard import LockBoard
from devices.serialbus import BusServer
from gateway.bus import BusOwner
from gateway.command_log import CommandLog
from gateway.locker_banks import Compartment, LockerBanks, Parcel
from gateway.locker_watch import LockerWatch
from gateway.lockers import Lockers
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.parcels import DepositRequest, Opened, Parcels, load_code_key
from gateway.settings import GatewaySettings, LockBoardSettings
from gateway.store import Store
from tests.gateway.bus_sim import FAST_BAUD, bus_settings
from trust import write_secret

T0 = 1_700_000_000_000
"""The fake wall clock's start (ms)."""
HOUR = 3_600_000

BOARDS = {"A-0": 0, "A-1": 1}
COMPARTMENTS = [
    {"no": 1, "board": "A-1", "lock": 1, "size": "S"},
    {"no": 8, "board": "A-1", "lock": 2, "size": "M"},
    {"no": 2, "board": "A-0", "lock": 1, "size": "S"},
    {"no": 3, "board": "A-0", "lock": 2, "size": "S"},
    {"no": 4, "board": "A-0", "lock": 3, "size": "S"},
    {"no": 5, "board": "A-0", "lock": 4, "size": "M"},
    {"no": 6, "board": "A-0", "lock": 5, "size": "M"},
    {"no": 7, "board": "A-0", "lock": 6, "size": "L"},
]
WHERE = {c["no"]: (c["board"], c["lock"]) for c in COMPARTMENTS}


def new_parcel() -> str:
    """A fresh parcel id (32 lowercase hex)."""
    return uuid.uuid4().hex


class Clock:
    """An injectable wall clock in milliseconds."""

    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        """Let ``ms`` milliseconds pass."""
        self.now += ms


class Cabinet:
    """A simulated lock board behind a lock, so the test thread and the bus thread take turns.

    The person at the cabinet and the faults act through the methods here; the bus calls
    :meth:`respond`.
    """

    checksum_offset = -1

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
        """The board, held still while the test acts on it."""
        with self._lock:
            yield self.board


@dataclass
class LockerSite:
    """Everything of one gateway's locker side, on a temporary database."""

    settings: GatewaySettings
    server: BusServer
    cabinets: dict[str, Cabinet]
    owner: BusOwner
    clock: Clock
    key: bytes
    store: Store = field(init=False)
    outbox: Outbox = field(init=False)
    commands: CommandLog = field(init=False)
    banks: LockerBanks = field(init=False)
    parcels: Parcels = field(init=False)
    watch: LockerWatch = field(init=False)
    lockers: Lockers = field(init=False)

    def __post_init__(self) -> None:
        self.lockers = Lockers(self.settings.lockboards, {self.owner.name: self.owner})
        self.start_gateway()

    # -- the gateway's life ----------------------------------------------------------------

    def start_gateway(self) -> None:
        """Open the store and build the locker side (a gateway start)."""
        s = self.settings
        metrics = GatewayMetrics()
        self.store = Store(s.data_dir / "gateway.db", s.id)
        self.outbox = Outbox(self.store, clock=self.clock, metrics=metrics)
        self.commands = CommandLog(self.store, self.outbox, self.clock, metrics)
        self.banks = LockerBanks(s.lockers, self.store, self.outbox, self.clock)
        self.banks.load()
        assert s.parcels.code_key_file is not None
        self.parcels = Parcels(
            s.parcels, self.banks, self.lockers, load_code_key(s.parcels.code_key_file)
        )
        self.watch = LockerWatch(s.parcels, self.banks, self.parcels, self.lockers)

    def restart_gateway(self) -> None:
        """Stop the gateway (its store closes; nothing in memory survives) and start it again."""
        self.store.close()
        self.start_gateway()

    # -- the cabinet -------------------------------------------------------------------------

    @contextlib.contextmanager
    def at(self, no: int) -> Iterator[tuple[LockBoard, int]]:
        """``(board, lock)`` of compartment ``no``, held still."""
        board, lock = WHERE[no]
        with self.cabinets[board].hands() as b:
            yield b, lock

    def put(self, no: int) -> None:
        """The courier puts a parcel into open compartment ``no``."""
        with self.at(no) as (b, lock):
            b.put_parcel(lock)

    def take(self, no: int) -> None:
        """Someone takes the parcel out of open compartment ``no``."""
        with self.at(no) as (b, lock):
            b.take_parcel(lock)

    def close(self, no: int) -> None:
        """Someone shuts compartment ``no``."""
        with self.at(no) as (b, lock):
            b.close_door(lock)

    def door_open(self, no: int) -> bool:
        """Whether compartment ``no``'s door is open on the simulated board."""
        with self.at(no) as (b, lock):
            return b.compartment(lock).door_open

    def pulses(self, no: int) -> int:
        """How many times compartment ``no``'s solenoid fired (31H frames that reached it)."""
        with self.at(no) as (b, lock):
            return b.compartment(lock).pulses

    # -- the gateway's side ------------------------------------------------------------------

    async def poll(self, times: int = 1) -> None:
        """Let the watch make ``times`` passes over every board."""
        for _ in range(times):
            await self.watch.poll()

    def events(self, type_: str | None = None, **data: Any) -> list[dict[str, Any]]:
        """The data of outboxed events (of ``type_``, containing ``data``), in order."""
        return [
            e.data
            for e in self.outbox.pending(100_000)
            if (type_ is None or e.type == type_)
            and all(e.data.get(k) == v for k, v in data.items())
        ]

    def types(self) -> list[str]:
        """The types of every outboxed event, in order."""
        return [e.type for e in self.outbox.pending(100_000)]

    def compartment(self, no: int) -> Compartment:
        """Compartment ``no`` of bank A as stored."""
        found = self.banks.compartment("A", no)
        assert found is not None
        return found

    def parcel(self, parcel_id: str) -> Parcel:
        """A parcel as stored."""
        found = self.banks.parcel(parcel_id)
        assert found is not None
        return found

    def code(self, parcel_id: str) -> str:
        """The pickup code the recipient is shown (from ``code_n``, as the cloud computes it)."""
        (event,) = self.events("parcel.deposited", parcel=parcel_id)
        return derive_code(self.key, parcel_id, event["code_n"], self.settings.parcels.code_digits)

    async def deposit(self, parcel: str, size: str = "S", **kw: Any) -> Opened:
        """A courier's deposit command (courier 42, company SF) up to the open door."""
        request = DepositRequest(
            bank="A",
            parcel=parcel,
            size=size,  # type: ignore[arg-type]
            unit=kw.pop("unit", "1-2-301"),
            courier=kw.pop("courier", 42),
            company=kw.pop("company", "SF Express"),
            **kw,
        )
        return await self.parcels.deposit(request)

    async def deposited(self, parcel: str, size: str = "S", **kw: Any) -> Opened:
        """A complete deposit: opened, the parcel put in, the door shut, the watch noticed."""
        opened = await self.deposit(parcel, size, **kw)
        self.put(opened.compartment)
        self.close(opened.compartment)
        await self.poll()
        assert self.parcel(parcel).state == "occupied"
        return opened


def locker_settings(data_dir: Path, url: str, key_file: Path, **rules: Any) -> GatewaySettings:
    """Settings of a gateway with bank A on one lock-board line at ``url``."""
    return GatewaySettings.model_validate(
        {
            "id": "gw-lockers",
            "data_dir": data_dir,
            "buses": [bus_settings(url, name="lockers", timeout_ms=150, retries=1)],
            "lockboards": [
                LockBoardSettings(id=board, bus="lockers", board=address)
                for board, address in BOARDS.items()
            ],
            "lockers": [
                {
                    "id": "A",
                    "name": "Building 1 lobby",
                    "terminal": "term-a",
                    "compartments": COMPARTMENTS,
                }
            ],
            "parcels": {"code_key_file": key_file, "watch_interval_s": 0.05, **rules},
        }
    )


@contextlib.asynccontextmanager
async def locker_site(tmp_path: Path, **rules: Any) -> AsyncIterator[LockerSite]:
    """A running locker site (bus owner task included), torn down afterwards."""
    key = os.urandom(32)
    key_file = tmp_path / "keys" / "parcel-code.key"
    write_secret(key_file, key)
    cabinets = {board: Cabinet(LockBoard(address)) for board, address in BOARDS.items()}
    server = BusServer(
        lockboard.RequestFramer(),
        list(cabinets.values()),
        baud=FAST_BAUD,
        char_bits=10,
        pace=True,
        turnaround_ms=1.0,
        seed=7,
    )
    server.start()
    settings = locker_settings(tmp_path / "gw", server.url, key_file, **rules)
    owner = BusOwner(settings.buses[0], gap_s=0.002)
    task = asyncio.create_task(owner.run())
    site = LockerSite(settings, server, cabinets, owner, Clock(), key)
    try:
        yield site
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await owner.close()
        site.store.close()
        server.stop()


SiteFactory = Callable[..., contextlib.AbstractAsyncContextManager[LockerSite]]
