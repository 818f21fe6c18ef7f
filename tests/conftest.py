"""Fixtures that start real things: an MQTT broker, a database.

Services are used when they are there (Mosquitto on 127.0.0.1:1883, PostgreSQL on 127.0.0.1:5432).
With ``COURTYARD_REQUIRE_SERVICES=1`` (set by ``.ci/run``) their absence fails the run; otherwise
the tests fall back to the embedded amqtt broker and SQLite, so a bare machine runs the suite.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from courtyard.embedded_broker import EmbeddedBroker
from courtyard.mosquitto_process import mosquitto_binary

REQUIRE_SERVICES = os.environ.get("COURTYARD_REQUIRE_SERVICES") == "1"
PG_HOST, PG_PORT = "127.0.0.1", 5432


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _missing(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (COURTYARD_REQUIRE_SERVICES=1) but not reachable")


@dataclass(frozen=True)
class BrokerInfo:
    """Where a test's MQTT broker listens and which protocol it speaks."""

    host: str
    port: int
    protocol: str  # "5" for Mosquitto, "3.1.1" for the embedded amqtt broker
    kind: str


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerInfo]:
    """The machine's Mosquitto if it is running, else (off CI) an embedded broker."""
    if _port_open("127.0.0.1", 1883):
        yield BrokerInfo("127.0.0.1", 1883, "5", "mosquitto")
        return
    _missing("Mosquitto on 127.0.0.1:1883")
    with EmbeddedBroker() as b:
        yield BrokerInfo(b.host, b.port, "3.1.1", "embedded")


def require_mosquitto() -> None:
    """Skip the test (fail it under CI) when the mosquitto binary is not installed."""
    if mosquitto_binary() is None:
        _missing("the mosquitto binary")
        pytest.skip("mosquitto is not installed")


async def _pg_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    """Whether PostgreSQL is reachable (fails under CI if it is not)."""
    if _port_open(PG_HOST, PG_PORT):
        return True
    _missing(f"PostgreSQL on {PG_HOST}:{PG_PORT}")
    return False


@pytest.fixture
def database_url(postgres_available: bool, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: PostgreSQL when available, else a SQLite file."""
    if not postgres_available:
        yield f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
        return
    name = f"cy_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
