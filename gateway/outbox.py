"""The outbox: events waiting for the cloud's application-level ack.

An event is appended inside the same transaction as the state change it records::

    with store.transaction() as tx:
        tx.execute("UPDATE commands SET status = ? …")
        outbox.append(tx, "command.status", {"command": cid, "status": "opened"})

so the change and its report commit together or not at all. Each event gets a fresh UUID (hex) and
the next per-gateway ``seq`` (the table's AUTOINCREMENT key: 1, 2, 3 …, never reused, also across
restarts and after every row was deleted). Rows leave the outbox only through
:meth:`Outbox.acknowledge`, i.e. when the cloud has durably stored them; nothing is ever dropped,
coalesced or expired here (security and access events must all arrive).

Event data is encoded once, checked against the sync protocol's strict decoder (so the cloud can
always read what we send: integers only, no duplicate keys, bounded size and depth), and stored as
text.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cloud_sync.protocol import Event, SyncProtocolError
from cloud_sync.protocol.wire import decode_object, encode
from gateway.metrics import GatewayMetrics
from gateway.store import Store, Transaction

__all__ = ["MAX_EVENT_DATA_BYTES", "Outbox"]

MAX_EVENT_DATA_BYTES = 16 * 1024 - 16  # the protocol bounds {"d": data}; leave room for the wrapper

Listener = Callable[[Event], None]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    """The durable queue of events for the cloud, in ``seq`` order."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], int] = _wall_ms,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics or GatewayMetrics()
        self._listeners: list[Listener] = []
        # Counted once here and then kept up to date, because count(*) over a million-row backlog
        # would cost milliseconds on every scrape.
        self._depth = int(store.query("SELECT count(*) FROM outbox")[0][0])
        self._metrics.watch_outbox_depth(lambda: self._depth)

    @property
    def depth(self) -> int:
        """How many events await the cloud's ack."""
        return self._depth

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` after each appended event has committed."""
        self._listeners.append(listener)

    def append(self, tx: Transaction, type: str, data: dict[str, Any]) -> Event:
        """Append an event inside ``tx``; visible (and announced to listeners) on commit."""
        text = encode(data).decode("utf-8")
        if len(text) > MAX_EVENT_DATA_BYTES:
            raise SyncProtocolError(f"event data of {len(text)} bytes is too large")
        decode_object(text.encode("utf-8"), MAX_EVENT_DATA_BYTES)  # refuses floats, NaN, depth
        event_id = uuid.uuid4().hex
        ts = self._clock()
        # Validate id, type and ts before touching the table (seq is a placeholder here).
        Event(id=event_id, seq=1, ts=ts, type=type, data=data)
        cur = tx.execute(
            "INSERT INTO outbox (id, ts, type, data) VALUES (?, ?, ?, ?)",
            (event_id, ts, type, text),
        )
        seq = cur.lastrowid
        assert seq is not None
        event = Event(id=event_id, seq=seq, ts=ts, type=type, data=data)
        tx.on_commit(lambda: self._committed(event))
        return event

    def _committed(self, event: Event) -> None:
        self._depth += 1
        self._metrics.events_outboxed.labels(event.type).inc()
        for listener in self._listeners:
            listener(event)

    def pending(self, limit: int, after: int = 0) -> list[Event]:
        """Up to ``limit`` unacknowledged events with ``seq > after``, in ``seq`` order."""
        rows = self._store.query(
            "SELECT seq, id, ts, type, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [
            Event(id=eid, seq=seq, ts=ts, type=etype, data=json.loads(data))
            for seq, eid, ts, etype, data in rows
        ]

    def any_between(self, lo: int, hi: int) -> bool:
        """Whether any unacknowledged event has ``lo <= seq <= hi``."""
        rows = self._store.query(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE seq BETWEEN ? AND ?)", (lo, hi)
        )
        return bool(rows[0][0])

    def acknowledge(self, ranges: Sequence[tuple[int, int]]) -> int:
        """Delete the events the cloud acknowledged (inclusive seq ranges); how many went."""
        if not ranges:
            return 0
        with self._store.transaction() as tx:
            deleted = tx.executemany(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", [(lo, hi) for lo, hi in ranges]
            ).rowcount
        self._depth -= deleted
        self._metrics.events_acked.inc(deleted)
        return deleted
