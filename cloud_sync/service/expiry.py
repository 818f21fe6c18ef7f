"""The expiry sweeper: commands nobody answered end in a terminal status, never hang.

* ``queued``/``sent`` past ``expires_at + expiry_grace_ms`` become ``expired``: the gateway refuses
  a command after its signed expiry, so none of these can still open a door. The grace covers a
  report that is in flight when the expiry passes.
* ``acknowledged`` well past its expiry (``outcome_timeout_ms``) becomes ``failed``
  (reason ``no_outcome``): the strike was pulsed but the door's outcome never reached us.
* A ``parcel.deposit`` command that ends either way leaves its parcel, if still ``requested``,
  ``failed`` (reason ``expired``/``no_outcome``), in the same transaction.

Safe to run on every instance at once: each change is a compare-and-set through
:func:`cloud_sync.service.transitions.move`, so a command is expired (and audited) once.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import and_, or_, select
from sqlmodel import col

from cloud_sync.protocol import CommandStatus
from cloud_sync.service.db import Database
from cloud_sync.service.inbox import fail_parcel_of_command
from cloud_sync.service.state import Clock
from cloud_sync.service.tables import Command
from cloud_sync.service.transitions import move
from cloud_sync.service.waiters import CommandWaiters

__all__ = ["ExpirySweeper"]

log = structlog.get_logger(__name__)

_S = CommandStatus
_BATCH = 500


class ExpirySweeper:
    """Finds overdue commands and finishes them."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        waiters: CommandWaiters,
        *,
        grace_ms: int,
        outcome_timeout_ms: int,
        interval_s: float,
    ) -> None:
        self._db = db
        self._clock = clock
        self._waiters = waiters
        self._grace_ms = grace_ms
        self._outcome_ms = outcome_timeout_ms
        self._interval_s = interval_s
        self.expired = 0
        self.failed = 0

    async def sweep_once(self, now_ms: int | None = None) -> list[str]:
        """Finish every overdue command (up to a batch); the ids changed."""
        now = self._clock.now_ms() if now_ms is None else now_ms
        async with self._db.autocommit() as conn:
            rows = (
                await conn.execute(
                    select(col(Command.id), col(Command.status))
                    .where(
                        or_(
                            and_(
                                col(Command.status).in_((_S.QUEUED.value, _S.SENT.value)),
                                col(Command.expires_at) < now - self._grace_ms,
                            ),
                            and_(
                                col(Command.status) == _S.ACKNOWLEDGED.value,
                                col(Command.expires_at) < now - self._outcome_ms,
                            ),
                        )
                    )
                    .limit(_BATCH)
                )
            ).all()
        changed: list[str] = []
        for command_id, status in rows:
            seen = _S(status)
            to, reason = (
                (_S.FAILED, "no_outcome") if seen is _S.ACKNOWLEDGED else (_S.EXPIRED, None)
            )
            # One transaction per command: a sweep never holds the audit chain for long.
            async with self._db.begin() as conn:
                moved = await move(
                    conn, command_id, [(to, reason)], now_ms=now, actor="system:expiry"
                )
                if moved.changed and moved.status is not None:
                    # A deposit that never happened: its parcel is failed in the same commit.
                    await fail_parcel_of_command(conn, command_id, moved.status, moved.reason, now)
            if not moved.changed:
                continue  # a report (or another instance's sweep) got there first
            changed.append(command_id)
            if moved.status is _S.EXPIRED:
                self.expired += 1
            else:
                self.failed += 1
        self._waiters.notify(changed)
        return changed

    async def run(self) -> None:
        """Sweep every ``interval_s`` until cancelled; a failed sweep is logged and retried."""
        while True:
            try:
                await self.sweep_once()
            except Exception:
                # A database hiccup must not end the sweeper; the next round catches up.
                log.exception("expiry sweep failed")
            await asyncio.sleep(self._interval_s)
