"""Buses of echo devices on loopback, stopped (and checked for a thread crash) after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from devices.serialbus import BusServer
from tests.devices.serialbus.echo import EchoDevice, EchoFramer, Master

BusFactory = Callable[..., BusServer]


@pytest.fixture
def make_bus() -> Iterator[BusFactory]:
    """Start a bus of the given devices (default: echo devices 1, 2, 3); stop it afterwards."""
    servers: list[BusServer] = []

    def make(devices: list[EchoDevice] | None = None, **options: object) -> BusServer:
        chosen = devices if devices is not None else [EchoDevice(n) for n in (1, 2, 3)]
        server = BusServer(options.pop("framer", EchoFramer()), chosen, **options)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def make_master() -> Iterator[Callable[[BusServer], Master]]:
    """Connect raw-socket masters to buses; close them afterwards."""
    masters: list[Master] = []

    def make(server: BusServer) -> Master:
        master = Master(server.port)
        masters.append(master)
        return master

    yield make
    for master in masters:
        master.close()
