"""The gateway's record of each accepted command and its lifecycle state.

Every status change is one transaction that updates the record *and* appends the
``command.status`` event, so the cloud hears of exactly the transitions that happened. Transitions
are checked by :func:`cloud_sync.protocol.advance`, the lifecycle table shared with the cloud; the
gateway never decides on its own which moves are legal.

A gateway that stops while a command is under way (crash, power cut, restart) cannot know whether
the pulse happened, and must never finish it late: at start-up :meth:`CommandLog.fail_unfinished`
turns every unfinished record into ``failed`` with reason ``interrupted``.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from cloud_sync.protocol import TERMINAL, CommandStatus, advance
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.store import Store, Transaction

__all__ = ["COMMAND_STATUS", "CommandLog", "status_event"]

log = structlog.get_logger(__name__)

#: The event type that reports a command's status to the cloud.
COMMAND_STATUS = "command.status"


def status_event(command_id: str, status: CommandStatus, reason: str | None) -> dict[str, str]:
    """The ``data`` of a ``command.status`` event."""
    data = {"command": command_id, "status": status.value}
    if reason is not None:
        data["reason"] = reason
    return data


class CommandLog:
    """Reads and moves the lifecycle state of locally recorded commands."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        clock: Callable[[], int],
        metrics: GatewayMetrics,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self._metrics = metrics

    def status(self, command_id: str) -> CommandStatus | None:
        """The current status of a command, or None if this gateway never recorded it."""
        rows = self._store.query("SELECT status FROM commands WHERE id = ?", (command_id,))
        return CommandStatus(rows[0][0]) if rows else None

    def reason(self, command_id: str) -> str | None:
        """The reason recorded with the command's last status, if any."""
        rows = self._store.query("SELECT reason FROM commands WHERE id = ?", (command_id,))
        return rows[0][0] if rows else None

    def advance(
        self, command_id: str, to: CommandStatus, reason: str | None = None
    ) -> CommandStatus:
        """Move a command to ``to`` (durably, with its event); raises ``IllegalTransition``."""
        with self._store.transaction() as tx:
            new = self.advance_in(tx, command_id, to, reason)
        return new

    def advance_in(
        self, tx: Transaction, command_id: str, to: CommandStatus, reason: str | None = None
    ) -> CommandStatus:
        """Like :meth:`advance`, inside the caller's transaction."""
        row = tx.execute("SELECT status FROM commands WHERE id = ?", (command_id,)).fetchone()
        if row is None:
            raise KeyError(command_id)
        new = advance(CommandStatus(row[0]), to)
        tx.execute(
            "UPDATE commands SET status = ?, reason = ?, updated_ms = ? WHERE id = ?",
            (new.value, reason, self._clock(), command_id),
        )
        self._outbox.append(tx, COMMAND_STATUS, status_event(command_id, new, reason))
        if new in TERMINAL:
            tx.on_commit(lambda: self._metrics.command_outcomes.labels(new.value).inc())
        return new

    def fail_unfinished(self, reason: str = "interrupted") -> list[str]:
        """Fail every command left unfinished by an earlier run; the ids that were failed."""
        rows = self._store.query(
            "SELECT id FROM commands WHERE status IN (?, ?) ORDER BY received_ms",
            (CommandStatus.SENT.value, CommandStatus.ACKNOWLEDGED.value),
        )
        failed = []
        with self._store.transaction() as tx:
            for (command_id,) in rows:
                self.advance_in(tx, command_id, CommandStatus.FAILED, reason)
                failed.append(command_id)
        if failed:
            log.warning("commands.interrupted", count=len(failed), commands=failed)
        return failed
