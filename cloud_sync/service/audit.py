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
never read the same head and fork the chain.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

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
    session: AsyncSession,
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

    With ``seal_for`` the detail is sealed under that (resident's) data key.
    """
    for name, value in (("actor", actor), ("action", action), ("obj", obj)):
        if not value or len(value) > _LIMITS[name]:
            raise AuditError(f"{name} must have 1 to {_LIMITS[name]} characters")
    # Write first: this locks the site's head (see the module docstring) before reading it.
    bumped = update(AuditHead).where(col(AuditHead.site_id) == site_id)
    result = await session.exec(
        bumped.values(seq=AuditHead.seq + 1).returning(col(AuditHead.seq), col(AuditHead.hash))
    )
    head = result.one_or_none()
    if head is None:
        raise AuditError(f"site {site_id} has no audit chain")
    seq, prev_hash = int(head[0]), str(head[1])
    when = ts if ts is not None else time.time_ns() // 1_000_000
    body = _detail_bytes(dict(detail or {}), seal_for, detail_place(site_id, seq))
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
    record = AuditRecord(
        site_id=site_id,
        seq=seq,
        ts=when,
        actor=actor,
        action=action,
        object=obj,
        detail=body,
        prev_hash=prev_hash,
        hash=digest,
    )
    session.add(record)
    await session.exec(bumped.values(hash=digest))
    await session.flush()
    return record


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
