from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import cloud_sync.service.tables  # noqa: F401  (every table in SQLModel.metadata)
from cloud_sync.service.db import Database
from cloud_sync.service.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, SQLModel.metadata))


async def _schema_diff(url: str) -> list[Any]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return await conn.run_sync(_diff)
    finally:
        await db.dispose()


async def test_upgrade_creates_exactly_the_tables_of_the_models(database_url: str) -> None:
    assert await current_revision(database_url) is None
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision() == "0004"
    assert await _schema_diff(database_url) == []


async def test_schema_comparison_notices_a_difference(database_url: str) -> None:
    # The comparison above can fail: a dropped index is reported.
    await upgrade(database_url)
    db = Database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_doors_building_id"))
    finally:
        await db.dispose()
    diff = await _schema_diff(database_url)
    assert [d[0] for d in diff] == ["add_index"]
    assert diff[0][1].name == "ix_doors_building_id"


async def test_upgrade_is_idempotent_and_safe_to_race(database_url: str) -> None:
    await asyncio.gather(upgrade(database_url), upgrade(database_url), upgrade(database_url))
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()
    assert await _schema_diff(database_url) == []


def test_migrations_ship_as_modules() -> None:
    # env.py and the revisions are modules of packages, so they ship with the distribution.
    assert (MIGRATIONS_DIR / "__init__.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "__init__.py").is_file()
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert not (MIGRATIONS_DIR / "alembic.ini").exists()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each engine (SQLite rebuilds tables where PostgreSQL alters them)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}"
    url: str = request.getfixturevalue("database_url")
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL is not running")
    return url


async def _upgrade_to(url: str, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await db.dispose()


_AT_0001 = [
    "INSERT INTO sites (id, name, created_at) VALUES (1, 'Court', 0)",
    "INSERT INTO buildings (id, site_id, name) VALUES (1, 1, '1')",
    "INSERT INTO gateways (id, site_id, name, command_seq, last_event_seq, online)"
    " VALUES ('gw-1', 1, 'Gate', 1, 0, false)",
    "INSERT INTO doors (id, site_id, gateway_id, building_id, local_id, name, pulse_ms)"
    " VALUES (1, 1, 'gw-1', 1, 'b1-main', 'Main', 3000)",
    "INSERT INTO accounts (id, site_id, login, password_hash, role, disabled, created_at)"
    " VALUES (1, 1, 'wang', 'x', 'engineer', false, 0)",
    "INSERT INTO commands (id, site_id, gateway_id, door_id, account_id, action, seq, status,"
    " issued_at, expires_at, updated_at) VALUES ('" + "a" * 32 + "', 1, 'gw-1', 1, 1,"
    " 'door.unlock', 1, 'opened', 0, 30000, 10)",
]


async def test_door_commands_stored_at_0001_name_their_door_as_target_at_0002(
    any_database_url: str,
) -> None:
    url = any_database_url
    await _upgrade_to(url, "0001")
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            for statement in _AT_0001:
                await conn.execute(text(statement))
    finally:
        await db.dispose()

    await _upgrade_to(url, "0002")

    assert await current_revision(url) == "0002"
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT id, target, door_id, meter_id, status, seq FROM commands")
                )
            ).all()
    finally:
        await db.dispose()
    assert [tuple(r) for r in rows] == [("a" * 32, "b1-main", 1, None, "opened", 1)]
    await upgrade(url)  # and on to the head, with the row in place
    assert await _schema_diff(url) == []
