"""``courtyard audit verify``: walk every site's audit chain in the cloud database."""

from __future__ import annotations

from sqlalchemy import func, select

from cloud_sync.service import audit
from cloud_sync.service.db import Database
from cloud_sync.service.tables import AuditRecord

__all__ = ["verify_audit"]


async def verify_audit(database_url: str) -> tuple[list[audit.BrokenLink], int]:
    """The broken links found (empty when the chain verifies) and the number of records checked."""
    db = Database(database_url)
    try:
        async with db.session() as session:
            broken = await audit.verify(session)
            checked = (
                await session.execute(select(func.count()).select_from(AuditRecord))
            ).scalar_one()
            return broken, int(checked)
    finally:
        await db.dispose()
