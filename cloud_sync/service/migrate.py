"""Schema migrations: bring a cloud database to the newest Alembic revision.

The revisions live in ``cloud_sync/migrations/versions``; the configuration is built here, with no
``alembic.ini``. Upgrading is safe to start from several service instances at once: on PostgreSQL
the upgrade holds a transaction-scoped advisory lock, on SQLite the write lock (``BEGIN
IMMEDIATE``), so one instance migrates and the others then find the database at head. On both
engines the whole upgrade is one transaction: a failed revision leaves the schema as it was.

To write a revision: ``command.revision(alembic_config(url), "message", autogenerate=True,
rev_id="0002")`` against a database at head, then read and tidy what it wrote.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from cloud_sync.service.db import Database, normalize_url

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade",
    "upgrade_sync",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# pg_advisory_xact_lock key: the first 8 bytes of sha256(b"courtyard:migrate"), as a signed bigint.
_PG_LOCK_KEY = -6_774_961_995_504_540_207


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the cloud's migrations (and ``url``, when given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates "%": a percent-encoded password must be doubled.
        config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def upgrade(url: str) -> None:
    """Migrate the database at ``url`` to head (a no-op when it is there already)."""
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            if db.is_sqlite:
                # The driver would begin only at the first INSERT and commit DDL on its own:
                # take the write lock now so the upgrade is serialised and one transaction.
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
                )
            await connection.run_sync(_upgrade_on)
    finally:
        await db.dispose()


def _upgrade_on(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def upgrade_sync(url: str) -> None:
    """:func:`upgrade` for callers without an event loop (the ``courtyard db upgrade`` command)."""
    asyncio.run(upgrade(url))


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or ``None`` when it was never migrated."""
    db = Database(url)
    try:
        async with db.engine.connect() as connection:
            return await connection.run_sync(_current_on)
    finally:
        await db.dispose()


def _current_on(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
