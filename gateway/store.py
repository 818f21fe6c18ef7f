"""The gateway's SQLite database: one file, one connection, short synchronous transactions.

Durability is the point of this file. The database runs in WAL mode with ``synchronous=FULL``, so a
transaction that returned from ``COMMIT`` survives a power cut; the outbox, the replay guard and
the door driver rely on that to commit *before* they acknowledge or actuate anything.

The connection is owned by the event-loop thread and used inline, not through a worker thread.
That is a measured choice: an fsync'd commit costs ~0.2 ms here and a typical transaction writes one
to three rows, far less than the ~50 µs-per-hop cost and the ordering hazards of shipping every
transaction to a thread (two in-flight transactions could commit out of order, and the unlock path
would pay a thread hop per step). Everything that must be atomic goes through
:meth:`Store.transaction`, which opens ``BEGIN IMMEDIATE`` and commits on exit; nested transactions
are refused rather than silently merged.

Schema changes are numbered migrations tracked in ``PRAGMA user_version``; a database written by a
newer gateway is refused instead of being misread. The database is bound to one gateway id (kept in
``meta``) because event sequence numbers and replay state mean nothing under another identity.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import StoreError

__all__ = ["SCHEMA_VERSION", "Store", "Transaction"]

log = structlog.get_logger(__name__)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # key/value facts about this database (the gateway it belongs to).
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        # AUTOINCREMENT, not a plain rowid: SQLite then never reuses a seq, even after every row
        # was acknowledged and deleted, and its counter commits in the same transaction as the row.
        "CREATE TABLE outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " id TEXT NOT NULL,"
        " ts INTEGER NOT NULL,"
        " type TEXT NOT NULL,"
        " data TEXT NOT NULL)",
        # Highest accepted command seq per cloud signing key.
        "CREATE TABLE replay_keys ("
        " kid TEXT PRIMARY KEY,"
        " last_seq INTEGER NOT NULL,"
        " updated_ms INTEGER NOT NULL) WITHOUT ROWID",
        # Every authenticated command this gateway saw, with its local lifecycle state.
        "CREATE TABLE commands ("
        " id TEXT PRIMARY KEY,"
        " kid TEXT NOT NULL,"
        " seq INTEGER NOT NULL,"
        " door TEXT NOT NULL,"
        " action TEXT NOT NULL,"
        " actor TEXT NOT NULL,"
        " status TEXT NOT NULL,"
        " reason TEXT,"
        " received_ms INTEGER NOT NULL,"
        " expires_ms INTEGER NOT NULL,"
        " updated_ms INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE INDEX commands_by_status ON commands (status)",
        # What the gateway last heard from each door controller (dedup and online tracking).
        "CREATE TABLE controllers ("
        " device TEXT PRIMARY KEY,"
        " boot TEXT,"
        " seq INTEGER NOT NULL DEFAULT 0,"
        " online INTEGER) WITHOUT ROWID",
    ),
    (
        # Parcel lockers (docs/parcels.md, gateway/locker_banks.py). One row per configured
        # compartment, reconciled with the settings at start-up; ``parcel`` is the parcel the
        # compartment holds or is being cleared of.
        "CREATE TABLE compartments ("
        " bank TEXT NOT NULL,"
        " no INTEGER NOT NULL,"
        " board TEXT NOT NULL,"
        " lock INTEGER NOT NULL,"
        " size TEXT NOT NULL,"
        " state TEXT NOT NULL,"
        " parcel TEXT,"
        " reason TEXT,"
        " changed_ms INTEGER NOT NULL,"
        " PRIMARY KEY (bank, no)) WITHOUT ROWID",
        # Every parcel the gateway handled; ``code_index`` is the keyed hash of its pickup code.
        "CREATE TABLE parcels ("
        " id TEXT PRIMARY KEY,"
        " bank TEXT NOT NULL,"
        " compartment INTEGER,"
        " size TEXT NOT NULL,"
        " unit TEXT NOT NULL,"
        " courier INTEGER,"
        " company TEXT,"
        " deposit_via TEXT NOT NULL,"
        " state TEXT NOT NULL,"
        " code_n INTEGER,"
        " code_index TEXT,"
        " opened_ms INTEGER,"
        " deposited_ms INTEGER,"
        " picked_ms INTEGER,"
        " via TEXT,"
        " fee_cents INTEGER,"
        " changed_ms INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE INDEX parcels_by_bank_state ON parcels (bank, state)",
        # Two parcels holding a code in one bank never share its index.
        "CREATE UNIQUE INDEX parcels_by_code ON parcels (bank, code_index)"
        " WHERE state IN ('occupied', 'opening')",
        # Wrong pickup codes typed at a bank's keypad (the recent ones) and its lockout.
        "CREATE TABLE code_failures (bank TEXT NOT NULL, at_ms INTEGER NOT NULL)",
        "CREATE INDEX code_failures_by_bank ON code_failures (bank, at_ms)",
        "CREATE TABLE code_lockouts ("
        " bank TEXT PRIMARY KEY,"
        " lockouts INTEGER NOT NULL,"
        " locked_until_ms INTEGER NOT NULL) WITHOUT ROWID",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)


class Transaction:
    """One open write transaction; obtained from :meth:`Store.transaction`."""

    __slots__ = ("_conn", "_hooks")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._hooks: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement inside the transaction."""
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        """Run one statement for many parameter rows inside the transaction."""
        return self._conn.executemany(sql, rows)

    def on_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once the transaction has committed (never if it rolls back)."""
        self._hooks.append(hook)


class Store:
    """The gateway database file, opened for one gateway."""

    def __init__(self, path: Path, gateway_id: str) -> None:
        self.path = path
        self._in_tx = False
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so sqlite3 never opens an
            # implicit transaction behind our back.
            self._conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(str(path), f"cannot open: {exc}") from exc
        try:
            self._configure()
            self._migrate()
            self._bind(gateway_id)
        except BaseException:
            self._conn.close()
            raise

    # -- setup ---------------------------------------------------------------------------------

    def _configure(self) -> None:
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StoreError(str(self.path), f"not a usable database: {exc}") from exc
        if str(mode).lower() != "wal":
            raise StoreError(str(self.path), f"cannot enable WAL (journal_mode is {mode})")

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                str(self.path),
                f"schema version {version} is newer than this gateway's "
                f"{SCHEMA_VERSION}; refusing to guess",
            )
        for number in range(version, SCHEMA_VERSION):
            with self.transaction() as tx:
                for statement in _MIGRATIONS[number]:
                    tx.execute(statement)
                # PRAGMA takes no parameters; the value is our own integer.
                tx.execute(f"PRAGMA user_version = {number + 1}")
            log.info("store.migrated", path=str(self.path), version=number + 1)

    def _bind(self, gateway_id: str) -> None:
        with self.transaction() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('gateway', ?)", (gateway_id,)
            )
            owner = tx.execute("SELECT value FROM meta WHERE key = 'gateway'").fetchone()[0]
        if owner != gateway_id:
            raise StoreError(
                str(self.path), f"database belongs to gateway {owner!r}, not {gateway_id!r}"
            )

    # -- use -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction that commits (durably) on normal exit and rolls back on error."""
        if self._in_tx:
            raise StoreError(str(self.path), "nested transaction")
        self._in_tx = True
        tx = Transaction(self._conn)
        try:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield tx
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(str(self.path), str(exc)) from exc
                raise
        finally:
            self._in_tx = False
        for hook in tx._hooks:
            hook()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement (outside any write transaction)."""
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(str(self.path), str(exc)) from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
