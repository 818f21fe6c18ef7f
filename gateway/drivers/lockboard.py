"""Kerong KR-CU16-style lock boards: status queries and lock opens as bus requests.

* **Status** is 30H to one board, answered by its 35H (hooks and infrared of 16 locks). We query
  boards one at a time even to reconcile a whole bank: 32H asks every board at once, and on one
  line their 36H replies collide.
* **Open** is 31H. Some firmware answers it with a 35H, some says nothing, so the open takes a
  reply if one comes (:attr:`~gateway.bus_exchange.ReplyMode.OPTIONAL`) and its outcome is never
  trusted: the locker service always reads the board back with 30H and checks the hook bit.

Line: 19200 8N1 by factory default. The protocol sets no inter-frame gap; two character times
(with the 1 ms floor for fast lines) keeps a request off the tail of the previous reply.
"""

from __future__ import annotations

from typing import Final

from devices.lockboard import BoardStatus, Decoder, OpenLock, QueryBoard, encode
from gateway.bus_errors import UnknownDeviceError
from gateway.bus_exchange import ReplyMode
from gateway.drivers.base import LineRule, Request
from gateway.settings import LockBoardSettings

__all__ = ["LINE", "LockBoardDriver", "LockboardReplyDecoder"]

LINE: Final = LineRule(baud=19200, parity="N", gap_chars=2.0)


class LockboardReplyDecoder:
    """The codec's stream :class:`~devices.lockboard.Decoder` behind the owner's decoder face."""

    def __init__(self) -> None:
        self._decoder = Decoder()

    def feed(self, data: bytes) -> list[object]:
        """Frames completed by ``data``."""
        return list(self._decoder.feed(data))

    def idle(self) -> list[object]:
        """A stray STX can make the decoder wait for a frame that is not coming: hunt past it."""
        return list(self._decoder.idle())

    def reset(self) -> None:
        """Drop a partial frame."""
        self._decoder.reset()

    @property
    def checksum_errors(self) -> int:
        """SUM failures seen."""
        return self._decoder.checksum_errors

    @property
    def garbage_bytes(self) -> int:
        """Bytes that were part of no returned frame."""
        return self._decoder.discarded


class LockBoardDriver:
    """Builds the requests for one configured lock board."""

    protocol = "lockboard"

    def __init__(self, settings: LockBoardSettings) -> None:
        self.device = settings.id
        self.bus = settings.bus
        self.board = settings.board
        self.locks = settings.locks

    def _is_status(self, frame: object) -> bool:
        return isinstance(frame, BoardStatus) and frame.board == self.board

    def query(self) -> Request:
        """30H: the board's hooks and infrared sensors (a 35H reply is required)."""
        return Request(encode(QueryBoard(self.board)), LockboardReplyDecoder, self._is_status)

    def open(self, lock: int) -> Request:
        """31H: pulse one lock (a 35H reply is taken if the firmware sends one)."""
        if not 1 <= lock <= self.locks:
            raise UnknownDeviceError(self.device, f"no lock {lock} on this board")
        return Request(
            encode(OpenLock(self.board, lock)),
            LockboardReplyDecoder,
            self._is_status,
            ReplyMode.OPTIONAL,
        )
