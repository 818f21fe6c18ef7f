"""Finding frames in a noisy byte stream: `Framer`, `RequestFramer` and `Decoder`.

An RS-485 line delivers garbage before, inside and after frames, and frames in pieces. The framer
hunts for ``68 A0..A5 68 C L … CS 16`` with a valid checksum:

* bytes before a ``68`` are garbage (the ``FE`` preamble among them) and are dropped;
* a ``68`` whose header is implausible — an address byte neither BCD nor ``AA``, no second ``68``,
  L above 200 — is dropped as soon as the offending byte arrives, so garbage never makes the framer
  wait for a bogus length's worth of bytes;
* a plausible frame that is not complete yet stays buffered, unless a complete good frame already
  follows it (then the plausible start was noise and the frame after it wins);
* a bad checksum or a missing ``16`` drops one byte, and the hunt goes on from the next ``68``.

The buffer never holds more than one frame's worth of bytes beyond what the last `feed` brought.
`Decoder` adds the typed parse; `RequestFramer` is the simulator side's framer.
"""

from __future__ import annotations

import enum

from devices.dlt645.codec import from_envelope
from devices.dlt645.control import REPLY
from devices.dlt645.envelope import (
    END,
    HEADER_SIZE,
    OVERHEAD,
    START,
    WAKE_UP,
    checksum,
    plausible_header,
    unpack,
)
from devices.dlt645.errors import Dlt645Error
from devices.dlt645.frames import Frame

__all__ = ["Decoder", "Framer", "RequestFramer"]


class _Candidate(enum.Enum):
    COMPLETE = enum.auto()
    INCOMPLETE = enum.auto()
    BAD_CHECKSUM = enum.auto()
    INVALID = enum.auto()


def _examine(buf: bytearray, start: int) -> tuple[_Candidate, int]:
    """What the bytes from `start` (a ``68``) are, and where the frame ends if complete."""
    if not plausible_header(buf, start):
        return _Candidate.INVALID, 0
    if len(buf) - start < HEADER_SIZE:
        return _Candidate.INCOMPLETE, 0
    length = buf[start + 9]
    end = start + OVERHEAD + length
    if len(buf) < end:
        return _Candidate.INCOMPLETE, 0
    if checksum(memoryview(buf)[start : end - 2]) != buf[end - 2]:
        return _Candidate.BAD_CHECKSUM, 0
    if buf[end - 1] != END:
        return _Candidate.INVALID, 0
    return _Candidate.COMPLETE, end


class Framer:
    """Cuts a byte stream into complete, checksum-valid raw frames (from ``68`` through ``16``).

    The counters tell a bus's statistics what the line is like: `garbage_bytes` dropped (not
    counting ``FE`` preamble bytes), `checksum_errors` seen and `frames` delivered.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.garbage_bytes = 0
        self.checksum_errors = 0
        self.frames = 0

    @property
    def buffered(self) -> int:
        """Bytes held back: the start of a frame still arriving."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a partial frame (after a timeout: its rest is not coming)."""
        self._drop(len(self._buffer))

    def feed(self, data: bytes) -> list[bytes]:
        """Take newly received bytes; return every frame now complete, in order."""
        self._buffer += data
        found: list[bytes] = []
        while True:
            frame = self._next()
            if frame is None:
                return found
            self.frames += 1
            found.append(frame)

    def _drop(self, count: int) -> None:
        dropped = self._buffer[:count]
        self.garbage_bytes += len(dropped) - dropped.count(WAKE_UP)
        del self._buffer[:count]

    def _next(self) -> bytes | None:
        buf = self._buffer
        start = buf.find(START)
        waiting_at: int | None = None
        while start != -1:
            verdict, end = _examine(buf, start)
            if verdict is _Candidate.COMPLETE:
                # Whatever came before — noise, or a plausible start that never completed — is gone.
                self._drop(start)
                frame = bytes(buf[: end - start])
                del buf[: end - start]
                return frame
            if verdict is _Candidate.INCOMPLETE and waiting_at is None:
                waiting_at = start
            elif verdict is _Candidate.BAD_CHECKSUM and waiting_at is None:
                self.checksum_errors += 1
            start = buf.find(START, start + 1)
        self._drop(len(buf) if waiting_at is None else waiting_at)
        return None


class RequestFramer(Framer):
    """The framer of a simulated meter: complete frames from the master, replies left out.

    On a real RS-485 line every meter also hears the other meters' replies; a meter must never
    act on those, so frames with the direction bit (D7) set are dropped here. Satisfies
    `devices.serialbus.RequestFramer`.
    """

    def feed(self, data: bytes) -> list[bytes]:
        """Take newly received bytes; return every complete request frame, in order."""
        return [frame for frame in super().feed(data) if not frame[8] & REPLY]


class Decoder:
    """A stream decoder: bytes in, typed `Frame`s out, hunting through noise (see module doc).

    Used by a master for replies and by a meter for requests. A frame that is well delimited and
    checksummed but whose contents do not parse (a read with L = 3, an impossible date) is dropped
    and counted in `rejected`, with its error kept in `last_error`: `feed` itself never raises.
    """

    def __init__(self) -> None:
        self._framer = Framer()
        self.rejected = 0
        self.last_error: Dlt645Error | None = None

    @property
    def framer(self) -> Framer:
        """The underlying framer, for its counters."""
        return self._framer

    @property
    def buffered(self) -> int:
        """Bytes held back: the start of a frame still arriving."""
        return self._framer.buffered

    def reset(self) -> None:
        """Forget a partial frame (after a timeout: its rest is not coming)."""
        self._framer.reset()

    def feed(self, data: bytes) -> list[Frame]:
        """Take newly received bytes; return every frame now complete, in order."""
        frames: list[Frame] = []
        for raw in self._framer.feed(data):
            try:
                frames.append(from_envelope(unpack(raw)))
            except Dlt645Error as exc:
                self.rejected += 1
                self.last_error = exc
        return frames
