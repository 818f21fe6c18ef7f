"""Test helpers for running gateways in-process: a fake cloud, a command signer, settings.

Reusable by end-to-end tests (``from tests.gateway.harness import FakeCloud, CommandSigner``).
The fake cloud is written against the wire contract only (topics, ``EventBatch``, ``Ack``, signed
commands), never against gateway internals, so what it sees is what a real cloud would see.

For parcel lockers: :func:`lock_board_line` (one simulated 16-lock board on a paced line),
:func:`locker_overrides` (bank ``A`` on it, see :data:`LOCKER_SIZES`), :func:`qr_png` (a token as
a QR image, made with segno, not the production encoder) and :func:`token_text`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import segno

from cloud_sync.protocol import (
    Ack,
    CommandBody,
    CourierPass,
    Event,
    EventBatch,
    GatewayTopics,
    Message,
    MqttLink,
    PickupToken,
    coalesce_ranges,
    sign_command,
    sign_token,
)
from courtyard.mosquitto_process import MosquittoProcess
from devices import lockboard
from devices.lockboard import LockBoard
from devices.serialbus import BusServer
from gateway import BrokerSettings, DoorSettings, GatewaySettings, SiteBrokerSettings
from gateway.settings import LockBoardSettings, LockerBankSettings, ParcelRules
from tests.conftest import BrokerInfo, require_mosquitto
from tests.gateway.bus_sim import FAST_BAUD, bus_settings
from tests.gateway.locker_site import Cabinet
from trust import SigningKey, write_secret

TIMEOUT = 10.0
"""How long a test waits for anything it expects over the broker."""


def unique(prefix: str) -> str:
    """A fresh identifier, so tests sharing one Mosquitto never see each other's topics."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def now_ms() -> int:
    """Wall-clock milliseconds (what the cloud would stamp a command with)."""
    return time.time_ns() // 1_000_000


async def subscribed_link(
    host: str, port: int, protocol: str, patterns: list[str], *, client_id: str | None = None
) -> tuple[MqttLink, list[Message]]:
    """An MqttLink whose subscriptions are proven active, and what arrived before the proof."""
    link = MqttLink(host, port, client_id or unique("test"), protocol=protocol)  # type: ignore[arg-type]
    probe = f"test-probe/{uuid.uuid4().hex}"
    for pattern in [*patterns, probe]:
        link.subscribe(pattern, qos=1)
    await link.start()
    await link.wait_connected(TIMEOUT)
    # The broker handles one connection's packets in order: once our own probe comes back, every
    # SUBSCRIBE sent before it is in force.
    await link.publish(probe, b"probe", qos=1)
    early: list[Message] = []
    async with asyncio.timeout(TIMEOUT):
        while (message := await link.get()).topic != probe:
            early.append(message)
    return link, early


class RestartableMosquitto(MosquittoProcess):
    """A private Mosquitto that can be killed and started again on the same port, or paused."""

    def __init__(self, conf_dir: Path) -> None:
        require_mosquitto()
        super().__init__(conf_dir=conf_dir, start_within_s=TIMEOUT)

    @property
    def info(self) -> BrokerInfo:
        """Where it listens, in the form the ``broker`` fixture gives."""
        return BrokerInfo("127.0.0.1", self.port, "5", "mosquitto")


@dataclass
class FakeCloud:
    """The cloud side of one gateway's link, for tests: records events, acks them on demand."""

    host: str
    port: int
    protocol: str
    topics: GatewayTopics
    auto_ack: bool = True
    batches: list[EventBatch] = field(default_factory=list)
    events: dict[str, Event] = field(default_factory=dict)  # by event id, first arrival wins
    statuses: list[bytes] = field(default_factory=list)
    _link: MqttLink | None = None
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK."""
        await self.link.publish(topic, payload, qos=1, retain=retain)

    async def start(self) -> FakeCloud:
        """Connect and subscribe to the gateway's up topics."""
        self._link, early = await subscribed_link(
            self.host,
            self.port,
            self.protocol,
            [self.topics.up_events, self.topics.up_status],
            client_id=unique("fake-cloud"),
        )
        for message in early:
            await self._receive(message)
        self._task = asyncio.create_task(self._read())
        return self

    async def stop(self) -> None:
        """Disconnect and clear the gateway's retained status from the shared broker."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._link is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.publish(self.topics.up_status, b"", retain=True)
            await self._link.stop()

    async def __aenter__(self) -> FakeCloud:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def link(self) -> MqttLink:
        """The fake cloud's MQTT link."""
        assert self._link is not None
        return self._link

    async def _read(self) -> None:
        while True:
            await self._receive(await self.link.get())

    async def _receive(self, message: Message) -> None:
        async with self._changed:
            if message.topic == self.topics.up_events:
                batch = EventBatch.decode(message.payload)
                self.batches.append(batch)
                for event in batch.events:
                    self.events.setdefault(event.id, event)
                if self.auto_ack:
                    await self.ack([e.seq for e in batch.events])
            elif message.topic == self.topics.up_status:
                self.statuses.append(message.payload)
            self._changed.notify_all()

    async def ack(self, seqs: list[int]) -> None:
        """Send an application-level ack for ``seqs``."""
        payload = Ack(coalesce_ranges(seqs)).encode()
        await self.publish(self.topics.down_ack, payload)

    async def send(self, payload: bytes) -> None:
        """Publish raw bytes on the gateway's command topic."""
        await self.publish(self.topics.down_cmd, payload)

    def find(self, type_: str, **data: Any) -> list[Event]:
        """Events of ``type_`` whose data contains ``data``, in seq order."""
        found = [
            e
            for e in self.events.values()
            if e.type == type_ and all(e.data.get(k) == v for k, v in data.items())
        ]
        return sorted(found, key=lambda e: e.seq)

    async def wait_for(self, predicate: Callable[[FakeCloud], Any], within: float = TIMEOUT) -> Any:
        """Wait until ``predicate(self)`` is truthy and return its value."""
        async with asyncio.timeout(within), self._changed:
            while not (result := predicate(self)):
                await self._changed.wait()
            return result

    async def wait_event(self, type_: str, within: float = TIMEOUT, **data: Any) -> Event:
        """The first event of ``type_`` with ``data``, waiting for it if need be."""
        found: list[Event] = await self.wait_for(lambda c: c.find(type_, **data), within)
        return found[0]

    async def outcome(self, command_id: str, within: float = TIMEOUT) -> Event:
        """The command's terminal ``command.status`` event."""
        terminal = {"opened", "released_not_opened", "failed", "rejected"}

        def done(cloud: FakeCloud) -> Event | None:
            for event in cloud.find("command.status", command=command_id):
                if event.data["status"] in terminal:
                    return event
            return None

        result: Event = await self.wait_for(done, within)
        return result


class CommandSigner:
    """Signs ``door.unlock`` commands the way the cloud does, with its own seq counter."""

    def __init__(self, key: SigningKey, gateway: str) -> None:
        self.key = key
        self.gateway = gateway
        self.seq = 0

    def body(
        self,
        target: str,
        *,
        seq: int | None = None,
        issued_at: int | None = None,
        lifetime_ms: int = 30_000,
        gateway: str | None = None,
        args: dict[str, int | str] | None = None,
        action: str = "door.unlock",
    ) -> CommandBody:
        """A command body; by default the next seq, issued now, for this gateway."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        iat = now_ms() if issued_at is None else issued_at
        return CommandBody(
            id=uuid.uuid4().hex,
            gateway=gateway or self.gateway,
            target=target,
            action=action,
            seq=seq,
            issued_at=iat,
            expires_at=iat + lifetime_ms,
            kid=self.key.kid,
            actor="resident:7",
            args=args or {},
        )

    def sign(self, body: CommandBody) -> bytes:
        """The signed wire bytes of ``body``."""
        return sign_command(self.key, body)

    def unlock(self, target: str, **kw: Any) -> tuple[str, bytes]:
        """(command id, signed bytes) of a fresh unlock."""
        body = self.body(target, **kw)
        return body.id, self.sign(body)


def make_settings(
    *,
    host: str,
    port: int,
    protocol: str,
    data_dir: Path,
    key_files: list[Path],
    gateway_id: str | None = None,
    doors: list[DoorSettings] | None = None,
    prefix: str | None = None,
    **overrides: Any,
) -> GatewaySettings:
    """Settings for a test gateway on one broker (used as both cloud and site broker)."""
    broker = {"host": host, "port": port, "protocol": protocol}
    return GatewaySettings(
        id=gateway_id or unique("gw"),
        data_dir=data_dir,
        cloud=BrokerSettings(**broker),
        site=SiteBrokerSettings(**broker, prefix=prefix or unique("site")),
        cloud_keys=key_files,
        doors=doors or [],
        **overrides,
    )


# -- parcel lockers ------------------------------------------------------------------------------

LOCKER_BOARD = "bank-a-0"
"""The one lock board of bank ``A`` (address 0, 16 locks; lock n is compartment n)."""
LOCKER_SIZES: dict[int, str] = {
    **dict.fromkeys(range(1, 5), "mini"),
    **dict.fromkeys(range(5, 11), "S"),
    **dict.fromkeys(range(11, 15), "M"),
    15: "L",
    16: "L",
}
"""Bank ``A``: compartments 1-4 mini, 5-10 S, 11-14 M, 15-16 L."""
DAY_MS = 86_400_000


@contextlib.contextmanager
def lock_board_line() -> Iterator[tuple[BusServer, Cabinet]]:
    """One simulated 16-lock board (address 0) on a paced line; the cabinet to act on it."""
    cabinet = Cabinet(LockBoard(0))
    server = BusServer(
        lockboard.RequestFramer(),
        [cabinet],
        baud=FAST_BAUD,
        char_bits=10,
        pace=True,
        turnaround_ms=1.0,
        seed=7,
    )
    server.start()
    try:
        yield server, cabinet
    finally:
        server.stop()


def code_key_file(directory: Path) -> tuple[Path, bytes]:
    """A fresh 32-byte site code key written (0600) under ``directory``: (file, key)."""
    key = os.urandom(32)
    path = directory / "parcel-code.key"
    write_secret(path, key)
    return path, key


def locker_overrides(
    bus_url: str, key_file: Path, *, terminal: str | None = None, **rules: Any
) -> dict[str, Any]:
    """Settings overrides (for :func:`make_settings`) of bank ``A`` on :data:`LOCKER_BOARD` at
    ``bus_url``, the watch reading the board every 50 ms."""
    compartments = [
        {"no": no, "board": LOCKER_BOARD, "lock": no, "size": size}
        for no, size in LOCKER_SIZES.items()
    ]
    return {
        "buses": [bus_settings(bus_url, name="lockers-a", timeout_ms=150, retries=1)],
        "lockboards": [LockBoardSettings(id=LOCKER_BOARD, bus="lockers-a", board=0)],
        "lockers": (
            LockerBankSettings.model_validate(
                {
                    "id": "A",
                    "name": "Building 1 lobby",
                    "terminal": terminal,
                    "compartments": compartments,
                }
            ),
        ),
        "parcels": ParcelRules.model_validate(
            {"code_key_file": key_file, "watch_interval_s": 0.05, **rules}
        ),
    }


def qr_png(text: str, scale: int = 6) -> bytes:
    """``text`` as a QR code PNG (segno, error correction M, 4-module quiet zone)."""
    buffer = io.BytesIO()
    qr = segno.make_qr(text, error="m", mode="byte", boost_error=False)
    qr.save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def token_text(
    key: SigningKey,
    gateway: str,
    *,
    parcel: str | None = None,
    bank: str = "A",
    courier: int | None = None,
    company: str = "SF Express",
    lifetime_ms: int = DAY_MS,
) -> str:
    """A signed pickup token (``parcel``) or courier pass (``courier``), issued now."""
    iat = now_ms()
    body: PickupToken | CourierPass
    if parcel is not None:
        body = PickupToken(parcel, gateway, bank, iat, iat + lifetime_ms, key.kid)
    else:
        assert courier is not None
        body = CourierPass(courier, company, gateway, iat, iat + lifetime_ms, key.kid)
    return sign_token(key, body)
