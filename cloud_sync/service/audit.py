"""The cloud's audit log: one hash chain per site, appended in the caller's transaction.

Each record links to the one before it::

    hash = SHA-256( prev_hash(32 raw bytes) ‖ b"courtyard:audit:v1\\x00"
                    ‖ site_id(i64 BE) ‖ seq(i64 BE) ‖ ts(i64 BE)
                    ‖ len(actor)(u32 BE) ‖ actor(UTF-8) ‖ len(action) ‖ action
                    ‖ len(object) ‖ object ‖ len(detail) ‖ detail )

``seq`` counts from 1 per site; the first record's ``prev_hash`` is 64 zeros. ``detail`` is stored
and hashed as bytes: key-sorted compact JSON, or, when it concerns a resident, that JSON sealed
under the resident's data key. Erasing the resident destroys the key, so the detail can no longer
be read, but its bytes (and so the chain) are unchanged and still verify.

Appends to one site are serialised by the site's :class:`~cloud_sync.service.tables.AuditHead`
row: the first statement of :func:`append` is an ``UPDATE`` of that row. On PostgreSQL the row lock
makes a concurrent append wait until this transaction ends and then see its result; on SQLite the
``UPDATE`` takes the database write lock before anything of the chain is read, so two appends can
never read the same head and fork the chain. When this process wrote the head last, that first
``UPDATE`` is a compare-and-set that moves the head from the (seq, hash) it remembers straight to
the new record's (one round trip fewer); if the head moved meanwhile it matches nothing and the
append locks and reads the head as above.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Table, bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.service.db import Connection, run
from cloud_sync.service.tables import AuditHead, AuditRecord
from trust import DataKey, Place, open_sealed, seal

__all__ = [
    "GENESIS_HASH",
    "MAX_DETAIL_BYTES",
    "AuditError",
    "BrokenLink",
    "append",
    "detail_place",
    "link_hash",
    "read_detail",
    "verify",
]

#: The ``prev_hash`` of every site's first record.
GENESIS_HASH = "0" * 64
#: Upper bound on a record's stored detail.
MAX_DETAIL_BYTES = 16 * 1024

_DOMAIN = b"courtyard:audit:v1\x00"
_SEALED_PREFIX = b"\x01"  # trust.seal's version byte; JSON details start with "{"
_LIMITS = {"actor": 64, "action": 64, "obj": 128}
_STREAM_BATCH = 1000
# Core tables: appends run inside the unlock and ingest transactions, no ORM unit of work needed.
_HEADS: Table = AuditHead.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_RECORDS: Table = AuditRecord.__table__  # type: ignore[attr-defined]
_BUMP_HEAD = (
    _HEADS.update()
    .where(_HEADS.c.site_id == bindparam("site"))
    .values(seq=_HEADS.c.seq + 1)
    .returning(_HEADS.c.seq, _HEADS.c.hash)
)
_INSERT_RECORD = _RECORDS.insert().returning(_RECORDS.c.id)
_EXTEND_HEAD = (
    _HEADS.update()
    .where(
        _HEADS.c.site_id == bindparam("site"),
        _HEADS.c.seq == bindparam("prev_seq"),
        _HEADS.c.hash == bindparam("prev_hash"),
    )
    .values(seq=bindparam("seq"), hash=bindparam("hash"))
    .returning(_HEADS.c.seq)
)
_HEAD_HINTS: WeakKeyDictionary[Engine, dict[int, tuple[int, str]]] = WeakKeyDictionary()
_SET_HEAD_HASH = (
    _HEADS.update().where(_HEADS.c.site_id == bindparam("site")).values(hash=bindparam("hash"))
)


class AuditError(Exception):
    """An audit record cannot be appended (no chain for the site, or invalid fields)."""


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """Where a site's chain first fails to verify.

    ``reason`` is one of ``seq_gap`` (no record at ``seq``; ``row_id`` is the next record found),
    ``out_of_place`` (the record that links to ``seq - 1`` sits at another seq or site: ``row_id``),
    ``prev_mismatch`` (``row_id`` does not link to the record before it), ``hash_mismatch``
    (``row_id``'s content does not give its hash), ``head_mismatch`` (the head does not name the
    last record: records were removed from the end, or the head was edited) and ``missing_head``.
    """

    site_id: int
    seq: int
    row_id: int | None
    reason: str


def link_hash(
    prev_hash: str,
    *,
    site_id: int,
    seq: int,
    ts: int,
    actor: str,
    action: str,
    obj: str,
    detail: bytes,
) -> str:
    """The hash of one record (hex), exactly as in the module docstring."""
    h = hashlib.sha256(bytes.fromhex(prev_hash))
    h.update(_DOMAIN)
    h.update(struct.pack(">qqq", site_id, seq, ts))
    for part in (actor.encode(), action.encode(), obj.encode(), detail):
        h.update(struct.pack(">I", len(part)))
        h.update(part)
    return h.hexdigest()


def detail_place(site_id: int, seq: int) -> Place:
    """Where a sealed detail belongs: bound to its site and seq, so it cannot be moved."""
    return Place("audit_log", "detail", f"{site_id}/{seq}")


async def append(
    session: Connection,
    *,
    site_id: int,
    actor: str,
    action: str,
    obj: str,
    detail: Mapping[str, Any] | None = None,
    seal_for: DataKey | None = None,
    ts: int | None = None,
) -> AuditRecord:
    """Append a record to ``site_id``'s chain in the caller's transaction (not committed here).

    ``session`` is an ORM session or a Core connection in a transaction; only Core statements are
    used (two round trips when this process knows the head, else three; no ORM unit of work).
    With ``seal_for`` the detail is sealed under that (resident's) data key. The returned record
    is not attached to any session.
    """
    for name, value in (("actor", actor), ("action", action), ("obj", obj)):
        if not value or len(value) > _LIMITS[name]:
            raise AuditError(f"{name} must have 1 to {_LIMITS[name]} characters")
    when = ts if ts is not None else time.time_ns() // 1_000_000
    fields = (site_id, when, actor, action, obj, dict(detail or {}), seal_for)
    heads = _known_heads(session)
    known = heads.get(site_id)
    if known is not None:
        # Optimistic: extend the head this process last wrote, if it is still the head. The
        # compare-and-set UPDATE is the first statement (it locks the row, see the module
        # docstring); if another writer moved the head, it matches nothing and we lock and read.
        values = _record(*fields, seq=known[0] + 1, prev_hash=known[1])
        extended = (
            await run(
                session,
                _EXTEND_HEAD,
                {
                    "site": site_id,
                    "seq": values["seq"],
                    "hash": values["hash"],
                    "prev_seq": known[0],
                    "prev_hash": known[1],
                },
            )
        ).one_or_none()
        if extended is not None:
            record_id = (await run(session, _INSERT_RECORD, values)).scalar_one()
            heads[site_id] = (values["seq"], values["hash"])
            return AuditRecord(id=record_id, **values)
    # Write first: this locks the site's head (see the module docstring) before reading it.
    head = (await run(session, _BUMP_HEAD, {"site": site_id})).one_or_none()
    if head is None:
        raise AuditError(f"site {site_id} has no audit chain")
    values = _record(*fields, seq=int(head[0]), prev_hash=str(head[1]))
    record_id = (await run(session, _INSERT_RECORD, values)).scalar_one()
    await run(session, _SET_HEAD_HASH, {"site": site_id, "hash": values["hash"]})
    heads[site_id] = (values["seq"], values["hash"])
    return AuditRecord(id=record_id, **values)


def _record(
    site_id: int,
    when: int,
    actor: str,
    action: str,
    obj: str,
    detail: dict[str, Any],
    seal_for: DataKey | None,
    *,
    seq: int,
    prev_hash: str,
) -> dict[str, Any]:
    """The column values of the record at ``seq`` after ``prev_hash``."""
    body = _detail_bytes(detail, seal_for, detail_place(site_id, seq))
    digest = link_hash(
        prev_hash,
        site_id=site_id,
        seq=seq,
        ts=when,
        actor=actor,
        action=action,
        obj=obj,
        detail=body,
    )
    return {
        "site_id": site_id,
        "seq": seq,
        "ts": when,
        "actor": actor,
        "action": action,
        "object": obj,
        "detail": body,
        "prev_hash": prev_hash,
        "hash": digest,
    }


def _known_heads(session: Connection) -> dict[int, tuple[int, str]]:
    """The (seq, hash) of each site's head as this process last wrote it, for this database.

    Only a hint: it may be behind (another instance appended) or ahead (the transaction that
    wrote it rolled back); either way the compare-and-set in :func:`append` fails and the head is
    locked and read. It can never make a record link to anything but the real head.
    """
    if isinstance(session, AsyncConnection):
        engine: Engine = session.sync_engine
    elif isinstance(session.bind, AsyncEngine | AsyncConnection):
        engine = session.bind.sync_engine
    else:
        return {}  # not bound to one engine: no hints
    return _HEAD_HINTS.setdefault(engine, {})


def _detail_bytes(detail: dict[str, Any], seal_for: DataKey | None, place: Place) -> bytes:
    text = json.dumps(
        detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    body = seal(seal_for, text, place) if seal_for is not None else text.encode()
    if len(body) > MAX_DETAIL_BYTES:
        raise AuditError(f"detail is over {MAX_DETAIL_BYTES} bytes")
    return body


def read_detail(record: AuditRecord, key: DataKey | None = None) -> dict[str, Any] | None:
    """A record's detail; ``None`` when it is sealed and ``key`` is not given (or was erased)."""
    if record.detail.startswith(_SEALED_PREFIX):
        if key is None:
            return None
        text = open_sealed(key, record.detail, detail_place(record.site_id, record.seq))
        return dict(json.loads(text))
    return dict(json.loads(record.detail))


async def verify(session: AsyncSession, site_id: int | None = None) -> list[BrokenLink]:
    """The first broken link of every site's chain (of ``site_id``'s only); empty when all hold."""
    heads_q = select(AuditHead)
    sites_q = select(AuditRecord.site_id).distinct()
    if site_id is not None:
        heads_q = heads_q.where(col(AuditHead.site_id) == site_id)
        sites_q = sites_q.where(col(AuditRecord.site_id) == site_id)
    # Plain values, not the ORM objects: the session may hold a stale AuditHead.
    heads = {
        h.site_id: (h.seq, h.hash)
        for h in (await session.exec(heads_q.execution_options(populate_existing=True))).all()
    }
    sites = set(heads) | set((await session.exec(sites_q)).all())
    broken: list[BrokenLink] = []
    for sid in sorted(sites):
        link = await _verify_site(session, sid, heads.get(sid))
        if link is not None:
            broken.append(link)
    return broken


async def _verify_site(
    session: AsyncSession, site_id: int, head: tuple[int, str] | None
) -> BrokenLink | None:
    a = AuditRecord
    rows = await session.stream(
        sa_select(
            col(a.id),
            col(a.site_id),
            col(a.seq),
            col(a.ts),
            col(a.actor),
            col(a.action),
            col(a.object),
            col(a.detail),
            col(a.prev_hash),
            col(a.hash),
        )
        .where(col(AuditRecord.site_id) == site_id)
        .order_by(col(AuditRecord.seq))
        .execution_options(yield_per=_STREAM_BATCH)
    )
    expected_seq, expected_prev = 1, GENESIS_HASH
    last_id: int | None = None
    async for row_id, sid, seq, ts, actor, action, obj, detail, prev_hash, digest in rows:
        if seq != expected_seq:
            await rows.close()
            if seq < expected_seq:  # only a seq edited below 1 sorts before the chain
                return BrokenLink(site_id, seq, row_id, "out_of_place")
            return await _gap(session, site_id, expected_seq, expected_prev, row_id)
        if prev_hash != expected_prev:
            await rows.close()
            return BrokenLink(site_id, seq, row_id, "prev_mismatch")
        actual = link_hash(
            expected_prev,
            site_id=sid,
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            obj=obj,
            detail=bytes(detail),
        )
        if actual != digest:
            await rows.close()
            return BrokenLink(site_id, seq, row_id, "hash_mismatch")
        expected_seq, expected_prev, last_id = seq + 1, digest, row_id
    if head is None:
        return BrokenLink(site_id, expected_seq - 1, last_id, "missing_head")
    if head != (expected_seq - 1, expected_prev):
        return BrokenLink(site_id, expected_seq, None, "head_mismatch")
    return None


async def _gap(
    session: AsyncSession, site_id: int, seq: int, prev_hash: str, next_row_id: int | None
) -> BrokenLink:
    # The record that should be at ``seq`` links to ``prev_hash``. If it still exists elsewhere
    # (its seq or site_id was edited), name it; otherwise it was deleted: name the next record.
    # Every site's first record links to the genesis hash, so look only in this site for it.
    where = [col(AuditRecord.prev_hash) == prev_hash]
    if prev_hash == GENESIS_HASH:
        where.append(col(AuditRecord.site_id) == site_id)
    moved = (
        await session.exec(select(AuditRecord.id).where(*where).order_by(col(AuditRecord.id)))
    ).first()
    if moved is not None:
        return BrokenLink(site_id, seq, moved, "out_of_place")
    return BrokenLink(site_id, seq, next_row_id, "seq_gap")
