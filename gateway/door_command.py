"""One ``door.unlock`` on its way through a door controller: a timed pulse and its outcome.

The steps, each status change committed with its ``command.status`` event::

    publish {"op":"pulse"} ─► controller ack ─ok──► acknowledged ─┬─ door_opened(cmd) ─► opened
                │                  └─ok:false──► failed(<error>)   ├─ strike_relocked(cmd)
                │                                                  └─ pulse+grace over
                │                                                       ─► released_not_opened
                └─ no ack in ack_timeout_ms ─► failed(controller_timeout)

Reports from the controller may overtake each other (ack and event travel on different topics);
a ``door_opened`` seen before the ack finishes the command at once, and the lifecycle table in
:mod:`cloud_sync.protocol.lifecycle` allows that step. Whatever goes wrong — no ack, a refusal,
the controller going offline, the link down, the gateway stopping — ends in ``failed``; no error
path sends a second pulse, and an unlock is only ever a pulse of bounded length.

The pulse is published at QoS 0 on purpose. A command must never run late: a QoS 1 publish is
retransmitted by the client after a reconnect, and a broker queues it for a controller whose
session outlived a disconnection. At most once, confirmed by the controller's ack, is the right
delivery for something that moves a strike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from cloud_sync.protocol import TERMINAL, CommandBody, CommandStatus, LinkError
from devices.door import (
    MAX_PULSE_MS,
    MIN_PULSE_MS,
    CommandAck,
    DoorEvent,
    EventType,
    PulseCommand,
    encode,
)
from gateway.command_log import CommandLog
from gateway.settings import DoorSettings
from gateway.store import Transaction

__all__ = ["Pulse", "pulse_length"]

log = structlog.get_logger(__name__)


def pulse_length(body: CommandBody, door: DoorSettings) -> int | None:
    """The pulse in ms: the command's ``pulse_ms`` clamped to the profile's range, else the door's.

    None when the command carries a ``pulse_ms`` that is not an integer.
    """
    requested = body.args.get("pulse_ms")
    if requested is None:
        return door.pulse_ms
    if isinstance(requested, bool) or not isinstance(requested, int):
        return None
    return max(MIN_PULSE_MS, min(MAX_PULSE_MS, requested))


class Pulse:
    """The in-flight state of one accepted unlock command."""

    def __init__(
        self, body: CommandBody, door: DoorSettings, ms: int, commands: CommandLog
    ) -> None:
        self.id = body.id
        self.door = door
        self.ms = ms
        self.status = CommandStatus.SENT
        self._log = commands
        loop = asyncio.get_running_loop()
        self._ack: asyncio.Future[CommandAck] = loop.create_future()
        self._done: asyncio.Future[CommandStatus] = loop.create_future()

    @property
    def finished(self) -> bool:
        """Whether the command reached a terminal status."""
        return self.status in TERMINAL

    # -- reports from the controller (called by the door driver) -----------------------------

    def on_ack(self, ack: CommandAck) -> None:
        """The controller answered the pulse."""
        if not self._ack.done():
            self._ack.set_result(ack)

    def on_event(self, tx: Transaction, event: DoorEvent) -> None:
        """A controller event naming this command, committed in ``tx`` with its outbox row."""
        if event.type is EventType.DOOR_OPENED:
            self.finish(CommandStatus.OPENED, tx=tx)
        elif event.type is EventType.STRIKE_RELOCKED:
            self.finish(CommandStatus.RELEASED_NOT_OPENED, tx=tx)

    def finish(
        self, status: CommandStatus, reason: str | None = None, *, tx: Transaction | None = None
    ) -> bool:
        """Move to a terminal ``status`` unless already finished; whether it moved."""
        if self.finished:
            return False
        if tx is None:
            self._log.advance(self.id, status, reason)
            self._settle(status)
        else:
            self._log.advance_in(tx, self.id, status, reason)
            tx.on_commit(lambda: self._settle(status))
        return True

    def _settle(self, status: CommandStatus) -> None:
        self.status = status
        if not self._done.done():
            self._done.set_result(status)

    # -- the timed flow ----------------------------------------------------------------------

    async def drive(self, publish: Callable[[bytes], Awaitable[None]]) -> CommandStatus:
        """Send the pulse and follow it to its outcome; never raises but ``CancelledError``."""
        try:
            await publish(encode(PulseCommand(id=self.id, relay=self.door.relay, ms=self.ms)))
            first: set[asyncio.Future[Any]] = {self._ack, self._done}
            await asyncio.wait(
                first,
                timeout=self.door.ack_timeout_ms / 1000,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self.finished:
                return self.status
            if not self._ack.done():
                self.finish(CommandStatus.FAILED, "controller_timeout")
                return self.status
            ack = self._ack.result()
            if not ack.ok:
                self.finish(CommandStatus.FAILED, ack.error.value if ack.error else "refused")
                return self.status
            self._log.advance(self.id, CommandStatus.ACKNOWLEDGED)
            self.status = CommandStatus.ACKNOWLEDGED
            await asyncio.wait({self._done}, timeout=(self.ms + self.door.open_grace_ms) / 1000)
            # Nobody opened the door within the pulse (plus grace): the strike is back.
            self.finish(CommandStatus.RELEASED_NOT_OPENED)
            return self.status
        except asyncio.CancelledError:
            self.finish(CommandStatus.FAILED, "interrupted")
            raise
        except LinkError:
            self.finish(CommandStatus.FAILED, "site_link_down")
            return self.status
        except Exception:
            # A bug or a dead store must not leave the command hanging; failing it is the one
            # answer that can never open a door.
            log.exception("door.command_crashed", command=self.id, door=self.door.id)
            try:
                self.finish(CommandStatus.FAILED, "internal_error")
            except Exception:
                log.exception("door.command_unrecorded", command=self.id)
            return self.status
