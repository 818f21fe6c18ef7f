"""The audit log, for auditors: read it, and verify its hash chain."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.service import audit, directory
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.policy import Action
from cloud_sync.service.routes import RouteTable, json_model, load_site, query_of
from cloud_sync.service.state import DB, KEYS, PRINCIPAL
from cloud_sync.service.tables import AuditRecord
from trust import DataKey, SealError

__all__ = ["AuditOut", "AuditRecordOut", "VerifyOut", "table"]

table = RouteTable()


class AuditRecordOut(BaseModel):
    """One link of the chain; ``detail`` is null when it can no longer be opened (erased)."""

    seq: int
    ts: int
    actor: str
    action: str
    object: str
    detail: dict[str, Any] | None
    sealed: bool
    hash: str


class AuditOut(BaseModel):
    """Records in chain order; pass the last ``seq`` as ``after`` for the next page."""

    records: list[AuditRecordOut]


class AuditQuery(BaseModel):
    """Paging through the chain."""

    model_config = ConfigDict(extra="ignore")
    after: int = Field(default=0, ge=0, le=(1 << 63) - 1)
    limit: int = Field(default=100, ge=1, le=1000)


class BrokenLinkOut(BaseModel):
    """Where the chain first fails to verify."""

    seq: int
    row_id: int | None
    reason: str


class VerifyOut(BaseModel):
    """The verdict on the site's chain."""

    ok: bool
    broken: list[BrokenLinkOut]


class _DetailKeys:
    """Finds the key a record's detail was sealed under: the audit key, or a resident's."""

    def __init__(self, session: AsyncSession, keys: CloudKeys) -> None:
        self._session = session
        self._keys = keys
        self._residents: dict[int, DataKey | None] = {}

    async def open(self, record: AuditRecord) -> tuple[dict[str, Any] | None, bool]:
        try:
            plain = audit.read_detail(record)
        except (ValueError, SealError):
            plain = None
        if plain is not None:
            return plain, False
        for key in (self._keys.audit_key, await self._resident_key(record.object)):
            if key is None:
                continue
            try:
                return audit.read_detail(record, key), True
            except SealError:
                continue
        return None, True

    async def _resident_key(self, obj: str) -> DataKey | None:
        kind, _, ident = obj.partition(":")
        if kind != "resident" or not ident.isdigit() or len(ident) > 18:
            return None
        rid = int(ident)
        if rid not in self._residents:
            self._residents[rid] = await directory.resident_key(self._session, self._keys, rid)
        return self._residents[rid]


@table.route(
    "GET",
    "/api/v1/audit",
    action=Action.AUDIT_LIST,
    load=load_site,
    summary="The site's audit records in chain order",
    query=AuditQuery,
    response=AuditOut,
)
async def list_audit(request: web.Request) -> web.Response:
    """A page of the site's audit chain."""
    q = query_of(request, AuditQuery)
    site_id = request[PRINCIPAL].site_id
    out: list[AuditRecordOut] = []
    async with request.app[DB].session() as session:
        rows = (
            await session.execute(
                select(AuditRecord)
                .where(col(AuditRecord.site_id) == site_id, col(AuditRecord.seq) > q.after)
                .order_by(col(AuditRecord.seq))
                .limit(q.limit)
            )
        ).scalars()
        keys = _DetailKeys(session, request.app[KEYS])
        for r in list(rows):
            detail, sealed = await keys.open(r)
            out.append(
                AuditRecordOut(
                    seq=r.seq,
                    ts=r.ts,
                    actor=r.actor,
                    action=r.action,
                    object=r.object,
                    detail=detail,
                    sealed=sealed,
                    hash=r.hash,
                )
            )
    return json_model(AuditOut(records=out))


@table.route(
    "GET",
    "/api/v1/audit/verify",
    action=Action.AUDIT_VERIFY,
    load=load_site,
    summary="Verify the site's audit hash chain",
    response=VerifyOut,
)
async def verify_audit(request: web.Request) -> web.Response:
    """Walk the chain and report the first broken link, if any."""
    async with request.app[DB].session() as session:
        broken = await audit.verify(session, request[PRINCIPAL].site_id)
    links = [BrokenLinkOut(seq=b.seq, row_id=b.row_id, reason=b.reason) for b in broken]
    return json_model(VerifyOut(ok=not links, broken=links))
