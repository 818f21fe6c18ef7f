from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.service.db import SQLITE_BUSY_TIMEOUT_MS, Database, normalize_url
from cloud_sync.service.tables import Site


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///var/lib/cy.db", "sqlite+aiosqlite:///var/lib/cy.db"),
        ("sqlite:////abs/cy.db", "sqlite+aiosqlite:////abs/cy.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_normalize_url_refuses_a_non_url() -> None:
    with pytest.raises(ValueError, match="database URL"):
        normalize_url("/var/lib/cy.db")


async def test_sqlite_connections_are_durable_and_strict(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert db.is_sqlite
        assert db.url.startswith("sqlite+aiosqlite:///")
        async with db.engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
        }
    finally:
        await db.dispose()


async def test_session_is_sqlmodel_keeps_objects_after_commit_and_allows_execute(
    db: Database,
) -> None:
    async with db.session() as s:
        assert isinstance(s, AsyncSession)
        site = Site(name="Commit Court", created_at=1)
        s.add(site)
        await s.commit()
        # expire_on_commit=False: reading an attribute after commit needs no (implicit) I/O.
        assert site.id is not None
        assert site.name == "Commit Court"
        # execute() must not raise sqlmodel's deprecation warning (warnings are errors here).
        assert (await s.execute(text("SELECT 1"))).scalar_one() == 1
    async with db.session() as s:
        assert (await s.exec(select(Site.name))).all() == ["Commit Court"]


async def test_closing_a_session_without_commit_rolls_back(db: Database) -> None:
    async with db.session() as s:
        s.add(Site(name="Never", created_at=1))
        await s.flush()
    async with db.session() as s:
        assert (await s.exec(select(Site))).all() == []


async def test_postgres_pool_is_bounded_and_repr_hides_the_password() -> None:
    db = Database("postgresql://courtyard:s3cret@127.0.0.1:5432/cloud")  # never connects
    try:
        assert db.url.startswith("postgresql+asyncpg://")
        assert not db.is_sqlite
        pool = db.engine.pool
        assert (pool.size(), pool._max_overflow) == (10, 10)  # type: ignore[attr-defined]
        assert "s3cret" not in repr(db)
        assert "127.0.0.1:5432/cloud" in repr(db)
    finally:
        await db.dispose()
