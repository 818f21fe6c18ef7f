"""Fixtures that run real gateways in-process against the real broker.

* ``mosquitto``: a private :class:`RestartableMosquitto` (for broker restarts and stalls);
* ``cloud_key`` / ``cloud_key_file``: the cloud's command-signing key and its ``.pub`` file;
* ``gateway_settings(**overrides)``: settings for a fresh gateway on the ``broker`` fixture;
* ``start_gateway(settings)``: a started, ready :class:`Gateway`, stopped after the test;
* ``fake_cloud(settings, auto_ack=True)``: a :class:`FakeCloud` for that gateway;
* ``door_simulator(settings, door_id, **kw)``: a :class:`DoorSimulator` online for that door;
* ``lines(settings, gap_s=0.003)``: a started :class:`~tests.gateway.bus_line.Line` (a bus owner
  on a simulated RS-485 line), stopped after the test;
* ``gateway_site``: all of it wired together — one door ``door-1`` with a walking-through
  simulator, a fake cloud, a signer, a ready gateway.

Everything is torn down in reverse order and retained messages are cleared, because the shared
Mosquitto would otherwise keep them across runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.protocol import GatewayTopics, MqttLink
from devices.door import Behaviour, DoorSimulator, MqttProtocol
from gateway import DoorSettings, Gateway, GatewaySettings
from gateway.settings import BusSettings
from tests.conftest import BrokerInfo
from tests.gateway.bus_line import Line
from tests.gateway.harness import (
    TIMEOUT,
    CommandSigner,
    FakeCloud,
    RestartableMosquitto,
    make_settings,
    unique,
)
from trust import SigningKey


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[RestartableMosquitto]:
    """A private Mosquitto of the test's own, to kill, restart or pause."""
    broker = RestartableMosquitto(tmp_path)
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def cloud_key(tmp_path: Path) -> SigningKey:
    """The cloud's command-signing key, saved (with its .pub) under tmp_path/keys."""
    key = SigningKey.generate()
    key.save(tmp_path / "keys" / "cloud.key")
    return key


@pytest.fixture
def cloud_key_file(cloud_key: SigningKey, tmp_path: Path) -> Path:
    """The public key file a gateway lists in ``cloud_keys``."""
    return tmp_path / "keys" / "cloud.key.pub"


@pytest.fixture
def gateway_settings(
    broker: BrokerInfo, tmp_path: Path, cloud_key_file: Path
) -> Callable[..., GatewaySettings]:
    """Build settings for a fresh gateway (unique id, prefix and data dir) on the test broker."""

    def build(**overrides: Any) -> GatewaySettings:
        overrides.setdefault("data_dir", tmp_path / unique("gw-data"))
        overrides.setdefault("key_files", [cloud_key_file])
        return make_settings(
            host=broker.host, port=broker.port, protocol=broker.protocol, **overrides
        )

    return build


async def _clear_retained(broker: BrokerInfo, topics: list[str]) -> None:
    link = MqttLink(broker.host, broker.port, unique("cleanup"), protocol=broker.protocol)  # type: ignore[arg-type]
    async with link:
        with contextlib.suppress(Exception):
            await link.wait_connected(TIMEOUT)
            async with asyncio.timeout(TIMEOUT):
                await asyncio.gather(
                    *(link.publish(topic, b"", qos=1, retain=True) for topic in topics)
                )


@pytest.fixture
async def start_gateway(broker: BrokerInfo) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """Start gateways in-process; each is ready (links up) when returned, stopped afterwards."""
    running: list[Gateway] = []
    retained: list[str] = []

    async def start(settings: GatewaySettings, *, wait_ready: bool = True) -> Gateway:
        gw = Gateway(settings)
        await gw.start()
        running.append(gw)
        retained.extend([gw.topics.up_status, gw.site_presence_topic])
        if wait_ready:
            await asyncio.wait_for(gw.ready.wait(), TIMEOUT)
        return gw

    yield start
    for gw in reversed(running):
        await gw.stop()
    await _clear_retained(broker, retained)


@pytest.fixture
async def fake_cloud(broker: BrokerInfo) -> AsyncIterator[Callable[..., Awaitable[FakeCloud]]]:
    """Start fake clouds for gateways; stopped (and their retained status cleared) afterwards."""
    clouds: list[FakeCloud] = []

    async def start(settings: GatewaySettings, *, auto_ack: bool = True) -> FakeCloud:
        cloud = FakeCloud(
            broker.host,
            broker.port,
            broker.protocol,
            GatewayTopics(settings.id, settings.topic_root),
            auto_ack=auto_ack,
        )
        await cloud.start()
        clouds.append(cloud)
        return cloud

    yield start
    for cloud in reversed(clouds):
        await cloud.stop()


@pytest.fixture
async def door_simulator(
    broker: BrokerInfo,
) -> AsyncIterator[Callable[..., Awaitable[DoorSimulator]]]:
    """Start a door simulator for a configured door and wait until it is online."""
    sims: list[DoorSimulator] = []

    async def start(settings: GatewaySettings, door_id: str, **kw: Any) -> DoorSimulator:
        door = settings.door(door_id)
        assert door is not None
        sim = DoorSimulator(
            device=door.device,
            host=broker.host,
            port=broker.port,
            prefix=settings.site.prefix,
            protocol=MqttProtocol(broker.protocol),
            **kw,
        )
        sim.start()
        sims.append(sim)
        if kw.get("behaviour") is not Behaviour.OFFLINE:
            await asyncio.to_thread(sim.wait_for, lambda s: s.online, TIMEOUT)
        return sim

    yield start
    states = []
    for sim in reversed(sims):
        await asyncio.to_thread(sim.stop)
        states.append(sim.topics.state)
    await _clear_retained(broker, states)


@dataclass
class GatewaySite:
    """One running gateway with a simulated door, a fake cloud and a command signer."""

    settings: GatewaySettings
    gateway: Gateway
    cloud: FakeCloud
    signer: CommandSigner
    doors: dict[str, DoorSimulator] = field(default_factory=dict)
    _start: Callable[..., Awaitable[Gateway]] | None = None

    async def unlock(self, door_id: str = "door-1", **kw: Any) -> str:
        """Send a freshly signed unlock; its command id."""
        command_id, payload = self.signer.unlock(door_id, **kw)
        await self.cloud.send(payload)
        return command_id

    async def restart(self) -> Gateway:
        """Stop the gateway and start a new one on the same settings (same database)."""
        assert self._start is not None
        await self.gateway.stop()
        self.gateway = await self._start(self.settings)
        return self.gateway


@pytest.fixture
async def gateway_site(
    gateway_settings: Callable[..., GatewaySettings],
    door_simulator: Callable[..., Awaitable[DoorSimulator]],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
    start_gateway: Callable[..., Awaitable[Gateway]],
    cloud_key: SigningKey,
) -> GatewaySite:
    # Requested in this order so teardown runs gateway, cloud, simulators: the gateway never sees
    # its simulators' retained state being cleared.
    """A ready gateway with door ``door-1`` (walk-through simulator, online) and a fake cloud."""
    settings = gateway_settings(
        doors=[DoorSettings(id="door-1", device=unique("dev"), pulse_ms=300, open_grace_ms=300)]
    )
    cloud = await fake_cloud(settings)
    sim = await door_simulator(settings, "door-1")
    gw = await start_gateway(settings)
    await cloud.wait_event("door.online", door="door-1", online=True)
    return GatewaySite(
        settings=settings,
        gateway=gw,
        cloud=cloud,
        signer=CommandSigner(cloud_key, settings.id),
        doors={"door-1": sim},
        _start=start_gateway,
    )


@pytest.fixture
async def lines() -> AsyncIterator[Callable[..., Line]]:
    """Start bus owners on simulated lines (``lines(settings, gap_s=0.003)``); stop them after."""
    started: list[Line] = []

    def make(settings: BusSettings, gap_s: float = 0.003) -> Line:
        line = Line(settings, gap_s)
        line.start()
        started.append(line)
        return line

    yield make
    for line in reversed(started):
        await line.stop()
    # Continuous polling leaves many wire records behind; collect them here rather than in a
    # later test's short timeout window.
    gc.collect()
