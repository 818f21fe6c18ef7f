"""Alembic's entry point: runs the revisions on the connection that ``migrate`` lends it.

:func:`cloud_sync.service.migrate.upgrade` opens the connection (and takes the migration lock) and
passes it in ``config.attributes["connection"]``. Run by the ``alembic`` command instead, this file
opens its own connection from ``sqlalchemy.url``; with ``--sql`` it writes the SQL out (offline).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import cloud_sync.service.tables  # noqa: F401  (registers every table in SQLModel.metadata)
from cloud_sync.service.db import normalize_url

config = context.config
target_metadata = SQLModel.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_own_connection(url: str) -> None:
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    lent = config.attributes.get("connection")
    if lent is not None:
        _run(lent)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or run through cloud_sync.service.migrate")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_own_connection(url))


_main()
