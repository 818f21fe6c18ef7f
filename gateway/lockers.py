"""Locker commands on lock boards: open a compartment and report the hook as read back.

An open is two exchanges at :attr:`~gateway.bus_exchange.Priority.COMMAND`, ahead of every
meter poll on the bus: 31H (whose reply, if the firmware sends one, is not trusted) and then 30H,
whose hook bit is the answer. A hook still closed after the pulse is a jammed lock — reported, not
retried here: pulsing a lock again is a decision for the parcel flow (retry once, then take the
compartment out of service), not for the bus.

The read-back is queued together with the pulse, so it runs right after it. When the firmware
does not answer 31H, the pulse's reply timeout has passed by then (the 100-300 ms the hook needs);
when it answers, its 35H came after the solenoid fired.

The 31H is never retried by the owner either (``retries=0``): a lost reply is normal for some
firmware, and a second pulse for a door that did open would be a second open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from devices.lockboard import BoardStatus
from gateway.bus import BusOwner
from gateway.bus_errors import NoReplyError, UnknownDeviceError
from gateway.bus_exchange import Exchange, Priority
from gateway.drivers import LockBoardDriver, Request
from gateway.settings import LockBoardSettings

__all__ = ["LockState", "Lockers"]

_STATUS_RETRIES: Final = 2


@dataclass(frozen=True, slots=True)
class LockState:
    """One compartment as read back from its board."""

    board: str
    lock: int
    hook_closed: bool
    """True: latched (closed, or jammed if an open was just commanded)."""
    occupied: bool
    """The infrared sensor sees something inside."""

    @property
    def opened(self) -> bool:
        """The hook let go: the door is open."""
        return not self.hook_closed


@dataclass(frozen=True, slots=True)
class _Board:
    settings: LockBoardSettings
    driver: LockBoardDriver
    owner: BusOwner


class Lockers:
    """Opens locks and reads lock boards through their buses' owners."""

    def __init__(
        self,
        boards: Sequence[LockBoardSettings],
        owners: Mapping[str, BusOwner],
        *,
        timeout_ms: int | None = None,
    ) -> None:
        self._boards: dict[str, _Board] = {}
        for settings in boards:
            owner = owners[settings.bus]
            owner.register(settings.id)
            self._boards[settings.id] = _Board(settings, LockBoardDriver(settings), owner)
        self._timeout_ms = timeout_ms

    def _board(self, board_id: str) -> _Board:
        board = self._boards.get(board_id)
        if board is None:
            raise UnknownDeviceError(board_id)
        return board

    def _exchange(
        self, board: _Board, request: Request, retries: int, priority: Priority, deadline: float
    ) -> Exchange:
        timeout_ms = self._timeout_ms or board.owner.settings.timeout_ms
        return Exchange(
            device=board.settings.id,
            request=request.data,
            decoder=request.decoder,
            accept=request.accept,
            timeout_s=timeout_ms / 1000.0,
            retries=retries,
            priority=priority,
            reply=request.reply,
            deadline=deadline,
        )

    async def open(self, board_id: str, lock: int, *, within_s: float = 10.0) -> LockState:
        """Pulse ``lock`` on board ``board_id`` and return the hook state read back after it."""
        board = self._board(board_id)
        deadline = time.monotonic() + within_s
        pulse = self._exchange(board, board.driver.open(lock), 0, Priority.COMMAND, deadline)
        query = self._exchange(
            board, board.driver.query(), _STATUS_RETRIES, Priority.COMMAND, deadline
        )
        # Queued together, so FIFO within COMMAND runs the read-back right after the pulse and no
        # poll slips in between: the answer reaches the courier one exchange sooner.
        opened = board.owner.submit(pulse)
        read_back = board.owner.submit(query)
        outcome = (await asyncio.gather(opened, read_back))[1]
        if not isinstance(outcome.frame, BoardStatus):
            raise NoReplyError(board.owner.name, board_id, "no status frame")
        status = outcome.frame
        return LockState(board_id, lock, status.hook_closed(lock), status.occupied(lock))

    async def status(
        self, board_id: str, *, priority: Priority = Priority.ON_DEMAND, within_s: float = 10.0
    ) -> BoardStatus:
        """Read one board's hooks and infrared sensors (30H)."""
        board = self._board(board_id)
        query = board.driver.query()
        deadline = time.monotonic() + within_s
        outcome = await board.owner.request(
            self._exchange(board, query, _STATUS_RETRIES, priority, deadline)
        )
        if not isinstance(outcome.frame, BoardStatus):
            raise NoReplyError(board.owner.name, board_id, "no status frame")
        return outcome.frame
