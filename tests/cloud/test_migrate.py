from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import cloud_sync.service.tables  # noqa: F401  (every table in SQLModel.metadata)
from cloud_sync.service.db import Database
from cloud_sync.service.migrate import MIGRATIONS_DIR, current_revision, head_revision, upgrade


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
    assert await current_revision(database_url) == head_revision() == "0002"
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
