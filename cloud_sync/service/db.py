"""The cloud's database connection: one async engine, sessions the caller commits.

PostgreSQL (asyncpg) in production; SQLite (aiosqlite) when the cloud is embedded (the demo) or on a
bare machine. Every URL goes through :func:`normalize_url`, so configuration may name the plain
``postgresql://`` or ``sqlite:///`` forms.

SQLite is opened in WAL mode with ``synchronous=FULL`` (a returned COMMIT survives a power cut),
foreign keys enforced and a busy timeout, so a writer waits for the lock instead of failing at once.
Its driver is left in its default transaction mode, where a transaction begins at the first write:
reads before it see the latest committed data, and the write lock is taken, waiting up to the busy
timeout, by the first INSERT/UPDATE/DELETE. Code that must read-then-write atomically on both
engines therefore writes first (see :func:`cloud_sync.service.audit.append`). SAVEPOINTs
(``begin_nested``) are not transactional in this mode: do not rely on them with SQLite.

Hot paths (authentication, the unlock, ingest) use SQLAlchemy Core on a plain connection rather
than an ORM session: :meth:`Database.begin` is one transaction, committed when the block ends;
:meth:`Database.autocommit` runs each statement as its own transaction, which saves the BEGIN and
ROLLBACK round trips of a one-statement read (or of a one-statement write whose atomicity is the
statement's own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Executable, Result, event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.asyncio import AsyncSession as _SQLAlchemyAsyncSession
from sqlalchemy.util.typing import TupleAny
from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "Connection", "Database", "Session", "normalize_url", "run"]

#: How long a SQLite writer waits for the write lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000

_ASYNC_SCHEMES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def normalize_url(url: str) -> str:
    """The async-driver form of a database URL; URLs that already name a driver are unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("a database URL looks like postgresql://… or sqlite:///…")
    target = _ASYNC_SCHEMES.get(scheme.lower())
    return f"{target}://{rest}" if target else url


class Session(AsyncSession):
    """sqlmodel's ``AsyncSession`` (``exec``) that also allows SQLAlchemy's ``execute``.

    sqlmodel marks ``execute`` deprecated, which raises under the test suite's warnings-as-errors;
    it is the plain SQLAlchemy method and the right one for multi-column rows and Core statements.
    """

    execute = _SQLAlchemyAsyncSession.execute


#: What a transaction's statements run on: an ORM session or a Core connection.
Connection = AsyncSession | AsyncConnection


async def run(conn: Connection, statement: Executable, params: Any = None) -> Result[*TupleAny]:
    """Execute a Core statement on a session or a connection.

    Sessions go through SQLAlchemy's own ``execute`` (sqlmodel marks its override deprecated).
    """
    if isinstance(conn, AsyncConnection):
        return await conn.execute(statement, params)
    return await _SQLAlchemyAsyncSession.execute(conn, statement, params)


class Database:
    """An async engine and a session factory for one database."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        options: dict[str, Any] = {"echo": echo}
        if not self.is_sqlite:
            # A stateless service instance serves many requests at once, each holding a
            # connection only for its transaction; 10 warm + 10 burst per instance keeps several
            # instances under PostgreSQL's default max_connections=100. Connections are
            # recycled hourly so a failover or a PgBouncer restart is picked up.
            options.update(
                pool_size=10,
                max_overflow=10,
                pool_timeout=10,
                pool_recycle=3600,
                connect_args={"server_settings": {"application_name": "courtyard-cloud"}},
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)
        self._sessions = async_sessionmaker(self.engine, class_=Session, expire_on_commit=False)
        # Same pool; the isolation level is set on checkout and reset on return.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A session; nothing is committed unless the caller commits (closing rolls back)."""
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in one transaction: committed at the end, rolled back on error."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection on which every statement commits on its own (no BEGIN/ROLLBACK).

        For single-statement reads, and single-statement writes that need no other statement in
        their transaction. Never for a read-then-write: each statement sees its own snapshot.
        """
        async with self._autocommit.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    def __repr__(self) -> str:
        # Never show a password that may be part of the URL.
        scheme, _, rest = self.url.partition("://")
        return f"Database({scheme}://…{rest.rpartition('@')[2]})"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # journal_mode is persistent in the file; the others are per connection.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
