"""Signed commands from the cloud: verify, guard against replay, commit, acknowledge, execute.

For each message on ``down/cmd`` (received with ``manual_ack``), in this order:

1. verify the signed bytes at the moment of receipt (:meth:`ReplayGuard.verify`, on the
   never-backwards :class:`trust.SafeClock`) — a command the broker held past its expiry is
   refused ``expired``, never run late;
2. the replay guard's checks, and the acceptance recorded in one transaction committed with
   ``synchronous=FULL``;
3. only then the broker's PUBACK, so a crash in between makes the broker redeliver, and the
   redelivery is refused as ``replayed`` rather than executed twice;
4. the handler registered for its action executes it, in a task of its own so other commands are
   not held up: ``door.unlock`` → :meth:`DoorDriver.unlock <gateway.doors.DoorDriver.unlock>` (a
   timed pulse), ``meter.read`` → :class:`MeterRead` (a read ahead of the schedule).

Which targets each action may name is the replay guard's to check (``unknown_target``); an action
the guard lets through must have a handler here, which :class:`CommandReceiver` checks when it is
built. A handler gets the accepted :class:`~cloud_sync.protocol.CommandBody`, whose record is
``sent``, and moves it through :class:`~gateway.command_log.CommandLog` to a terminal status.

A refusal is reported to the cloud. When the command's signature verified, it was addressed to
this gateway and the gateway holds no status for its id, the report is a ``command.status`` event
with status ``rejected`` and the refusal reason. Otherwise — a forgery (its id is not the cloud's
to trust), another gateway's command, a replay of a command whose status this gateway already
reports — it is a ``gateway.alarm`` of kind ``bad_command``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final

import structlog

from cloud_sync.protocol import (
    ACTIONS,
    CommandBody,
    CommandRefused,
    CommandStatus,
    Message,
    MqttLink,
    RefusalReason,
)
from gateway.bus_errors import (
    BusClosedError,
    BusError,
    DeviceReplyError,
    ExpiredError,
    NoReplyError,
    UnknownDeviceError,
)
from gateway.command_log import COMMAND_STATUS, CommandLog, status_event
from gateway.meters import MeterReader
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.replay import AUTHENTICATED_REFUSALS, ReplayGuard
from gateway.store import Store

__all__ = ["GATEWAY_ALARM", "CommandHandler", "CommandReceiver", "MeterRead", "read_failure"]

log = structlog.get_logger(__name__)

GATEWAY_ALARM = "gateway.alarm"

#: Refusals decided before the signature was checked: the message's claimed id means nothing.
_UNAUTHENTICATED = frozenset(
    {RefusalReason.MALFORMED, RefusalReason.UNKNOWN_KEY, RefusalReason.BAD_SIGNATURE}
)

Spawn = Callable[[str, Coroutine[Any, Any, Any]], None]

CommandHandler = Callable[[CommandBody], Awaitable[object]]
"""Executes one accepted command (recorded ``sent``) to a terminal status; what it returns is
ignored (the status is in the command log)."""

#: A ``meter.read`` may wait this long at most for its bus (less when the command expires sooner).
_READ_WITHIN_MAX_S: Final = 30.0
_READ_WITHIN_MIN_S: Final = 0.1

#: The ``failed`` reason of a ``meter.read`` by what ended it; the first class that matches wins.
_READ_FAILURES: Final[tuple[tuple[type[Exception], str], ...]] = (
    (NoReplyError, "no_reply"),
    (ExpiredError, "bus_unavailable"),
    (DeviceReplyError, "device_refused"),
    (BusClosedError, "interrupted"),
    (BusError, "bus_error"),
    (UnknownDeviceError, "unknown_device"),
)


def read_failure(exc: Exception) -> str:
    """The ``failed`` reason reported for a ``meter.read`` that ``exc`` ended."""
    for kind, reason in _READ_FAILURES:
        if isinstance(exc, kind):
            return reason
    return "internal_error"


class MeterRead:
    """The ``meter.read`` handler: read one meter now and report how it went.

    ``acknowledged`` (the gateway took the command on), then the read at the bus's on-demand
    priority (:meth:`MeterReader.read_now <gateway.meters.MeterReader.read_now>`, which records the
    ``meter.reading`` event in a transaction of its own before it returns), then ``completed``: so
    in the outbox, and at the cloud, the reading precedes the report that the command is done. A
    read that fails ends ``failed`` with :func:`read_failure`'s reason, and no reading. Each status
    change is one transaction with its ``command.status`` event (:class:`CommandLog`), so a read
    the gateway stopped in the middle of is failed ``interrupted`` at the next start.
    """

    def __init__(self, meters: MeterReader, commands: CommandLog, clock: Callable[[], int]) -> None:
        self._meters = meters
        self._commands = commands
        self._clock = clock

    async def __call__(self, body: CommandBody) -> CommandStatus:
        """Execute an accepted ``meter.read`` (recorded ``sent``); its final status."""
        commands = self._commands
        # The read may start until the command expires (at most 30 s from now): a reading
        # the cloud has stopped waiting for would be recorded, but answer nobody.
        within_s = (body.expires_at - self._clock()) / 1000
        within_s = min(_READ_WITHIN_MAX_S, max(_READ_WITHIN_MIN_S, within_s))
        try:
            commands.advance(body.id, CommandStatus.ACKNOWLEDGED)
            reading = await self._meters.read_now(body.target, within_s=within_s)
        except asyncio.CancelledError:
            commands.advance(body.id, CommandStatus.FAILED, "interrupted")
            raise
        except Exception as exc:
            reason = read_failure(exc)
            if reason == "internal_error":
                log.exception("meter.read_crashed", command=body.id, meter=body.target)
            else:
                log.warning("meter.read_failed", command=body.id, meter=body.target, error=str(exc))
            return commands.advance(body.id, CommandStatus.FAILED, reason)
        log.info("meter.read", command=body.id, meter=body.target, missing=list(reading.missing))
        return commands.advance(body.id, CommandStatus.COMPLETED)


async def _execute(handler: CommandHandler, body: CommandBody) -> None:
    await handler(body)


class CommandReceiver:
    """Takes signed commands off the cloud link and hands accepted ones to their handlers."""

    def __init__(
        self,
        link: MqttLink,
        store: Store,
        outbox: Outbox,
        guard: ReplayGuard,
        commands: CommandLog,
        handlers: Mapping[str, CommandHandler],
        clock: Callable[[], int],
        metrics: GatewayMetrics,
        spawn: Spawn,
    ) -> None:
        """``handlers``: the handler of each action, one for every action ``guard`` lets through."""
        unknown = handlers.keys() - ACTIONS
        if unknown:
            raise ValueError(f"no such command actions: {sorted(unknown)}")
        unhandled = guard.actions - handlers.keys()
        if unhandled:
            raise ValueError(f"the replay guard accepts actions without a handler: {unhandled}")
        self._link = link
        self._store = store
        self._outbox = outbox
        self._guard = guard
        self._commands = commands
        self._handlers = dict(handlers)
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
        log.info(
            "command.accepted",
            command=body.id,
            action=body.action,
            target=body.target,
            actor=body.actor,
        )
        handler = self._handlers[body.action]  # the guard lets through handled actions only
        self._spawn(f"{body.action}:{body.id}", _execute(handler, body))

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
