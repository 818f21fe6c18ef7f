"""``courtyard audit verify`` names the row someone edited in the database."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from typer.testing import CliRunner

from cloud_sync.service import provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.migrate import upgrade
from courtyard.cli import app


async def _seed(url: str) -> int:
    await upgrade(url)
    db = Database(url)
    try:
        async with db.session() as session:
            site = await provisioning.create_site(session, "Audit Gardens")
            assert site.id is not None
            for n in range(1, 4):
                await provisioning.create_building(session, site.id, f"Building {n}")
            await session.commit()
        async with db.session() as session:
            row = await session.execute(
                text(
                    "SELECT id FROM audit_log WHERE action = 'building.create'"
                    " ORDER BY seq LIMIT 1 OFFSET 1"
                )
            )
            return int(row.scalar_one())
    finally:
        await db.dispose()


async def _tamper(url: str, row_id: int) -> None:
    db = Database(url)
    try:
        async with db.session() as session:
            await session.execute(
                text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"), {"id": row_id}
            )
            await session.commit()
    finally:
        await db.dispose()


def test_verify_passes_then_names_the_edited_row(database_url: str) -> None:
    row_id = asyncio.run(_seed(database_url))
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--url", database_url])
    assert ok.exit_code == 0, ok.output
    assert "audit chain verifies (4 records)" in ok.output
    asyncio.run(_tamper(database_url, row_id))
    bad = runner.invoke(app, ["audit", "verify", "--url", database_url])
    assert bad.exit_code == 1
    assert f"row id={row_id}" in bad.output
    assert "hash_mismatch" in bad.output
