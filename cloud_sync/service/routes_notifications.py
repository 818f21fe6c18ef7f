"""A resident's in-app notifications (``parcel.waiting`` and others), newest first.

The rows are written by :mod:`cloud_sync.service.notifications` in the transaction of the change
they report; a body never holds a pickup code, a name or a phone number. The resident marks a
note read (``read_at``, set once: marking it again changes nothing); the list says how many of
them are still unread.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, func, select, update

from cloud_sync.service.errors import NotFound
from cloud_sync.service.policy import Action, NotificationRes, Principal, Resource
from cloud_sync.service.routes import RouteTable, json_model, load_self, query_of, resource_of
from cloud_sync.service.state import CLOCK, DB, PRINCIPAL
from cloud_sync.service.tables import Notification

__all__ = [
    "NotificationOut",
    "NotificationsOut",
    "NotificationsQuery",
    "load_notification",
    "table",
]

table = RouteTable()

_MAX_ID = (1 << 53) - 1
#: A notification id in a path: a positive integer of at most 16 digits (bounded by _MAX_ID).
_ID = r"[1-9][0-9]{0,15}"
_NOTES: Table = Notification.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped


class NotificationOut(BaseModel):
    """One message."""

    id: int
    kind: str = Field(description="what happened, e.g. `parcel.waiting`")
    body: dict[str, Any] = Field(
        description="small flat details to render (`parcel.waiting`: parcel, bank, compartment)"
    )
    created_at: int = Field(description="ms since the epoch")
    read_at: int | None = Field(description="when the resident marked it read (ms); null: unread")


class NotificationsOut(BaseModel):
    """The caller's notifications, newest first."""

    notifications: list[NotificationOut]
    next_before: int | None = Field(
        default=None, description="older ones follow: pass as `before` for the next page"
    )
    unread: int = Field(description="how many of the caller's notifications are unread (all pages)")


class NotificationsQuery(BaseModel):
    """Paging: notifications with an id below ``before``, at most ``limit``."""

    model_config = ConfigDict(extra="ignore")
    before: int | None = Field(default=None, ge=1, le=_MAX_ID, description="`next_before`")
    limit: int = Field(default=50, ge=1, le=200)


def _out(row: Any) -> NotificationOut:
    return NotificationOut(
        id=row.id, kind=row.kind, body=row.body, created_at=row.created_at, read_at=row.read_at
    )


async def load_notification(request: web.Request, principal: Principal) -> Resource | None:
    """The notification named in the path."""
    note_id = int(request.match_info["id"])
    if note_id > _MAX_ID:
        return None
    async with request.app[DB].autocommit() as conn:
        row = (await conn.execute(select(_NOTES).where(_NOTES.c.id == note_id))).one_or_none()
    return None if row is None else NotificationRes(row.site_id, row.resident_id, row)


@table.route(
    "GET",
    "/api/v1/notifications",
    action=Action.NOTIFICATION_LIST,
    load=load_self,
    summary="The caller's (a resident's) in-app notifications, newest first",
    query=NotificationsQuery,
    response=NotificationsOut,
)
async def list_notifications(request: web.Request) -> web.Response:
    """A page of the resident's own notifications, and how many of them all are unread."""
    resident_id = request[PRINCIPAL].resident_id
    if resident_id is None:  # the policy lets residents only; a resident has a record
        raise NotFound()
    q = query_of(request, NotificationsQuery)
    n = _NOTES.c
    stmt = select(_NOTES).where(n.resident_id == resident_id)
    if q.before is not None:
        stmt = stmt.where(n.id < q.before)
    unread = (
        select(func.count())
        .select_from(_NOTES)
        .where(n.resident_id == resident_id, n.read_at.is_(None))
    )
    async with request.app[DB].autocommit() as conn:
        rows = (await conn.execute(stmt.order_by(n.id.desc()).limit(q.limit + 1))).all()
        count = (await conn.execute(unread)).scalar_one()
    page = rows[: q.limit]
    out = NotificationsOut(
        notifications=[_out(row) for row in page],
        next_before=page[-1].id if len(rows) > q.limit else None,
        unread=count,
    )
    return json_model(out)


@table.route(
    "POST",
    f"/api/v1/notifications/{{id:{_ID}}}/read",
    action=Action.NOTIFICATION_READ,
    load=load_notification,
    summary="Mark one of the caller's (a resident's) notifications read; again changes nothing",
    response=NotificationOut,
)
async def read_notification(request: web.Request) -> web.Response:
    """Set ``read_at`` once; the notification as it now is."""
    row = resource_of(request, NotificationRes).row
    if row.read_at is None:
        n = _NOTES.c
        async with request.app[DB].autocommit() as conn:
            marked = (
                await conn.execute(
                    update(_NOTES)
                    .where(n.id == row.id, n.resident_id == row.resident_id, n.read_at.is_(None))
                    .values(read_at=request.app[CLOCK].now_ms())
                    .returning(*_NOTES.c)
                )
            ).one_or_none()
            if marked is None:  # marked read meanwhile, by another request
                marked = (await conn.execute(select(_NOTES).where(n.id == row.id))).one()
        row = marked
    return json_model(_out(row))
