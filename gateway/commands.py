"""Signed commands from the cloud: verify, guard against replay, commit, acknowledge, execute.

For each message on ``down/cmd`` (received with ``manual_ack``), in this order:

1. verify the signed bytes at the moment of receipt (:meth:`ReplayGuard.verify`, on the
   never-backwards :class:`trust.SafeClock`) — a command the broker held past its expiry is
   refused ``expired``, never run late;
2. the replay guard's checks, and the acceptance recorded in one transaction committed with
   ``synchronous=FULL``;
3. only then the broker's PUBACK, so a crash in between makes the broker redeliver, and the
   redelivery is refused as ``replayed`` rather than executed twice;
4. the door driver executes it as a pulse, in a task of its own so commands for other doors are
   not held up.

A refusal is reported to the cloud. When the command's signature verified, it was addressed to
this gateway and the gateway holds no status for its id, the report is a ``command.status`` event
with status ``rejected`` and the refusal reason. Otherwise — a forgery (its id is not the cloud's
to trust), another gateway's command, a replay of a command whose status this gateway already
reports — it is a ``gateway.alarm`` of kind ``bad_command``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from cloud_sync.protocol import (
    CommandRefused,
    CommandStatus,
    Message,
    MqttLink,
    RefusalReason,
)
from gateway.command_log import COMMAND_STATUS, CommandLog, status_event
from gateway.doors import DoorDriver
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.replay import AUTHENTICATED_REFUSALS, ReplayGuard
from gateway.store import Store

__all__ = ["GATEWAY_ALARM", "CommandReceiver"]

log = structlog.get_logger(__name__)

GATEWAY_ALARM = "gateway.alarm"

#: Refusals decided before the signature was checked: the message's claimed id means nothing.
_UNAUTHENTICATED = frozenset(
    {RefusalReason.MALFORMED, RefusalReason.UNKNOWN_KEY, RefusalReason.BAD_SIGNATURE}
)

Spawn = Callable[[str, Coroutine[Any, Any, Any]], None]


class CommandReceiver:
    """Takes signed commands off the cloud link and hands accepted ones to the door driver."""

    def __init__(
        self,
        link: MqttLink,
        store: Store,
        outbox: Outbox,
        guard: ReplayGuard,
        commands: CommandLog,
        driver: DoorDriver,
        clock: Callable[[], int],
        metrics: GatewayMetrics,
        spawn: Spawn,
    ) -> None:
        self._link = link
        self._store = store
        self._outbox = outbox
        self._guard = guard
        self._commands = commands
        self._driver = driver
        self._clock = clock
        self._metrics = metrics
        self._spawn = spawn

    def handle(self, message: Message) -> None:
        """Process one signed command message and acknowledge it to the broker."""
        now = self._clock()
        try:
            body = self._guard.verify(message.payload, now)
            with self._store.transaction() as tx:
                self._guard.accept(tx, body, now)
        except CommandRefused as refusal:
            self._refuse(refusal)
            self._link.ack(message)
            return
        # Durable now: the replay state and the command record are committed.
        self._link.ack(message)
        self._metrics.commands_accepted.inc()
        log.info("command.accepted", command=body.id, door=body.target, actor=body.actor)
        self._spawn(f"unlock:{body.id}", self._driver.unlock(body))

    def _refuse(self, refusal: CommandRefused) -> None:
        reason = refusal.reason
        command_id = refusal.command_id
        self._metrics.commands_refused.labels(reason.value).inc()
        log.warning("command.refused", reason=reason.value, command=command_id)
        with self._store.transaction() as tx:
            if (
                reason in AUTHENTICATED_REFUSALS
                and command_id is not None
                and self._commands.status(command_id) is None
            ):
                self._outbox.append(
                    tx,
                    COMMAND_STATUS,
                    status_event(command_id, CommandStatus.REJECTED, reason.value),
                )
                return
            alarm: dict[str, str] = {"kind": "bad_command", "reason": reason.value}
            if command_id is not None and reason not in _UNAUTHENTICATED:
                alarm["command"] = command_id
            self._outbox.append(tx, GATEWAY_ALARM, alarm)
