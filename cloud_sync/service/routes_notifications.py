"""A resident's in-app notifications (``parcel.waiting`` and others), newest first.

The rows are written by :mod:`cloud_sync.service.notifications` in the transaction of the change
they report; a body never holds a pickup code, a name or a phone number.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Table, select

from cloud_sync.service.errors import NotFound
from cloud_sync.service.policy import Action
from cloud_sync.service.routes import RouteTable, json_model, load_self, query_of
from cloud_sync.service.state import DB, PRINCIPAL
from cloud_sync.service.tables import Notification

__all__ = ["NotificationOut", "NotificationsOut", "NotificationsQuery", "table"]

table = RouteTable()

_MAX_ID = (1 << 53) - 1
_NOTES: Table = Notification.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped


class NotificationOut(BaseModel):
    """One message."""

    id: int
    kind: str = Field(description="what happened, e.g. `parcel.waiting`")
    body: dict[str, Any] = Field(
        description="small flat details to render (`parcel.waiting`: parcel, bank, compartment)"
    )
    created_at: int = Field(description="ms since the epoch")
    read_at: int | None = Field(description="null: not read yet")


class NotificationsOut(BaseModel):
    """The caller's notifications, newest first."""

    notifications: list[NotificationOut]
    next_before: int | None = Field(
        default=None, description="older ones follow: pass as `before` for the next page"
    )


class NotificationsQuery(BaseModel):
    """Paging: notifications with an id below ``before``, at most ``limit``."""

    model_config = ConfigDict(extra="ignore")
    before: int | None = Field(default=None, ge=1, le=_MAX_ID, description="`next_before`")
    limit: int = Field(default=50, ge=1, le=200)


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
    """A page of the resident's own notifications."""
    resident_id = request[PRINCIPAL].resident_id
    if resident_id is None:  # the policy lets residents only; a resident has a record
        raise NotFound()
    q = query_of(request, NotificationsQuery)
    n = _NOTES.c
    stmt = select(_NOTES).where(n.resident_id == resident_id)
    if q.before is not None:
        stmt = stmt.where(n.id < q.before)
    async with request.app[DB].autocommit() as conn:
        rows = (await conn.execute(stmt.order_by(n.id.desc()).limit(q.limit + 1))).all()
    page = rows[: q.limit]
    out = NotificationsOut(
        notifications=[
            NotificationOut(
                id=row.id,
                kind=row.kind,
                body=row.body,
                created_at=row.created_at,
                read_at=row.read_at,
            )
            for row in page
        ],
        next_before=page[-1].id if len(rows) > q.limit else None,
    )
    return json_model(out)
