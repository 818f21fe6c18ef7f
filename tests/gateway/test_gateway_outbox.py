"""The store and the outbox on a real SQLite file: sequence, acks, crashes, transactions."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync.protocol import Event, SyncProtocolError
from gateway import Outbox, Store, StoreError

GW = "gw-outbox"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db, GW) as s:
        yield s


def append(store: Store, outbox: Outbox, n: int, type_: str = "door.event") -> list[Event]:
    with store.transaction() as tx:
        return [outbox.append(tx, type_, {"n": i}) for i in range(n)]


def test_database_is_wal_with_full_sync(db: Path, store: Store) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    finally:
        conn.close()
    # synchronous is per connection: ask the store's own connection.
    assert store.query("PRAGMA synchronous") == [(2,)]  # FULL


def test_events_get_unique_ids_and_consecutive_seqs(store: Store) -> None:
    outbox = Outbox(store)
    events = append(store, outbox, 3) + append(store, outbox, 2)

    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert len({e.id for e in events}) == 5
    assert all(len(e.id) == 32 for e in events)
    assert [e.seq for e in outbox.pending(100)] == [1, 2, 3, 4, 5]
    assert outbox.pending(100)[1] == events[1]


def test_seq_continues_across_reopen_and_is_never_reused(db: Path) -> None:
    with Store(db, GW) as store:
        outbox = Outbox(store)
        append(store, outbox, 3)
        assert outbox.acknowledge([(1, 3)]) == 3
        assert outbox.depth == 0

    with Store(db, GW) as store:
        outbox = Outbox(store)
        assert [e.seq for e in append(store, outbox, 2)] == [4, 5]


def test_ack_ranges_delete_exactly_those_rows(store: Store) -> None:
    outbox = Outbox(store)
    append(store, outbox, 10)

    assert outbox.acknowledge([(2, 3), (7, 7), (50, 60)]) == 3

    assert [e.seq for e in outbox.pending(100)] == [1, 4, 5, 6, 8, 9, 10]
    assert outbox.depth == 7
    assert outbox.acknowledge([(2, 3)]) == 0  # a duplicate ack changes nothing
    assert outbox.depth == 7


def test_pending_pages_in_seq_order(store: Store) -> None:
    outbox = Outbox(store)
    append(store, outbox, 7)

    assert [e.seq for e in outbox.pending(3)] == [1, 2, 3]
    assert [e.seq for e in outbox.pending(3, after=3)] == [4, 5, 6]
    assert [e.seq for e in outbox.pending(3, after=6)] == [7]
    assert outbox.any_between(5, 9)
    outbox.acknowledge([(5, 7)])
    assert not outbox.any_between(5, 9)


def test_rows_committed_before_a_crash_are_there_after_it(db: Path) -> None:
    # A separate process appends, commits, and dies without closing anything (os._exit).
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from gateway import Outbox, Store
        store = Store(Path({str(db)!r}), {GW!r})
        outbox = Outbox(store)
        for i in range(5):
            with store.transaction() as tx:
                outbox.append(tx, "door.event", {{"n": i}})
        with store.transaction() as tx:
            outbox.append(tx, "door.event", {{"n": 99}})
            os._exit(0)  # dies mid-transaction: this one must not appear
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

    with Store(db, GW) as store:
        outbox = Outbox(store)
        events = outbox.pending(100)
        assert [e.data["n"] for e in events] == [0, 1, 2, 3, 4]
        assert outbox.depth == 5
        assert [e.seq for e in append(store, outbox, 1)] == [6]


def test_state_change_and_event_roll_back_together(store: Store) -> None:
    outbox = Outbox(store)
    heard: list[Event] = []
    outbox.add_listener(heard.append)

    def change_that_fails() -> None:
        with store.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES ('probe', 'x')")
            outbox.append(tx, "door.event", {"n": 1})
            raise RuntimeError("the state change failed half-way")

    with pytest.raises(RuntimeError):
        change_that_fails()

    assert outbox.pending(10) == []
    assert store.query("SELECT value FROM meta WHERE key = 'probe'") == []
    assert heard == []
    assert outbox.depth == 0


def test_listeners_hear_of_events_only_after_commit(store: Store) -> None:
    outbox = Outbox(store)
    heard: list[Event] = []
    outbox.add_listener(heard.append)

    with store.transaction() as tx:
        event = outbox.append(tx, "door.event", {"n": 1})
        assert heard == []
    assert heard == [event]
    assert outbox.depth == 1


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("door.event", {"float": 1.5}),
        ("door.event", {"big": "x" * 20_000}),
        ("not a type", {}),
    ],
)
def test_events_the_cloud_could_not_read_are_refused(
    store: Store, type_: str, data: dict[str, object]
) -> None:
    outbox = Outbox(store)
    with pytest.raises(SyncProtocolError), store.transaction() as tx:
        outbox.append(tx, type_, data)
    assert outbox.pending(10) == []


def test_store_refuses_another_gateways_database(db: Path) -> None:
    Store(db, GW).close()
    with pytest.raises(StoreError) as info:
        Store(db, "gw-other")
    assert "gw-outbox" in info.value.reason


def test_store_refuses_a_newer_schema(db: Path) -> None:
    Store(db, GW).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError) as info:
        Store(db, GW)
    assert "999" in info.value.reason


def test_nested_transactions_are_refused(store: Store) -> None:
    with store.transaction(), pytest.raises(StoreError), store.transaction():
        pass
