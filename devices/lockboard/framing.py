"""Frames out of a lock-board byte stream, hunting past garbage (sans-I/O).

A serial line delivers frames in pieces, glued together, and with noise before, inside and after
them. `Decoder.feed(bytes)` returns every complete frame found so far and keeps at most the start
of one partial frame (fewer than `MAX_FRAME_LENGTH` bytes), so its memory is bounded whatever the
line sends. It never raises: garbage is counted and skipped.

Hunting rule: look for STX; ask `frame_length` whether a frame starts there. If the bytes already
present cannot begin a frame (unknown CMD, ETX missing where the CMD puts it, wrong SUM), skip that
one STX byte and look for the next — a good frame may start inside the bad one. A frame whose shape
and SUM are right but whose values are not (32H not sent to F0H, a baud code above 3) is skipped
whole: its SUM says those really were the bytes sent.

One case needs help from the transport: a stray STX just before a real frame can make the bytes
look like the start of a longer frame, and then the decoder waits for bytes that are not coming.
Call `idle()` when the line has been quiet for longer than an inter-frame gap; it drops what cannot
complete and hunts through the rest.

`RequestFramer` is the same hunt for the board's side of a simulated bus: it returns the raw bytes
of each complete request frame, the shape that `devices.serialbus` hands to a `BusDevice`.
"""

from __future__ import annotations

from devices.lockboard.codec import STX, frame_length, parse
from devices.lockboard.errors import LockboardChecksumError, LockboardError
from devices.lockboard.frames import Frame, Request

__all__ = ["Decoder", "RequestFramer"]


class Decoder:
    """Typed frames (requests and replies alike) from a byte stream; see the module docstring.

    The counters are for the bus owner's per-device statistics:

    * `discarded`: bytes that were not part of any returned frame;
    * `checksum_errors`: candidate frames whose ETX was in place but whose SUM was wrong;
    * `rejected`: frames with a correct SUM but a value this codec refuses.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.discarded = 0
        self.checksum_errors = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Bytes held back as the possible start of a frame (always < `MAX_FRAME_LENGTH`)."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add bytes from the line; return the frames they complete, in order."""
        return [frame for frame, _raw in self._take(data)]

    def idle(self) -> list[Frame]:
        """The line went quiet: give up on the partial frame held back; hunt through its bytes."""
        return [frame for frame, _raw in self._give_up()]

    def reset(self) -> None:
        """Forget any partial frame (for example after reopening the port); counters stay."""
        self.discarded += len(self._buffer)
        self._buffer.clear()

    def _take(self, data: bytes | bytearray | memoryview) -> list[tuple[Frame, bytes]]:
        self._buffer += data
        return self._hunt()

    def _give_up(self) -> list[tuple[Frame, bytes]]:
        found: list[tuple[Frame, bytes]] = []
        while self._buffer:
            # What is buffered begins with an STX that cannot complete: drop that byte only.
            del self._buffer[0]
            self.discarded += 1
            found += self._hunt()
        return found

    def _hunt(self) -> list[tuple[Frame, bytes]]:
        buffer = self._buffer
        found: list[tuple[Frame, bytes]] = []
        position = 0
        while True:
            start = buffer.find(STX, position)
            if start < 0:
                self.discarded += len(buffer) - position
                position = len(buffer)
                break
            self.discarded += start - position
            position = start
            try:
                length = frame_length(buffer, position)
            except LockboardChecksumError:
                self.checksum_errors += 1
                self.discarded += 1
                position += 1
                continue
            except LockboardError:
                self.discarded += 1
                position += 1
                continue
            if length == 0:
                break
            raw = bytes(buffer[position : position + length])
            position += length
            try:
                frame = parse(raw)
            except LockboardError:
                self.rejected += 1
                self.discarded += length
                continue
            found.append((frame, raw))
        del buffer[:position]
        return found


class RequestFramer:
    """Raw request frames from the gateway's byte stream, for a simulated lock-board bus.

    Implements the ``RequestFramer`` protocol of ``devices.serialbus``: `feed` returns each
    complete, well-formed request frame as bytes, ready for `BusDevice.respond`. Replies and
    garbage are skipped (a board never acts on another board's reply).
    """

    def __init__(self) -> None:
        self._decoder = Decoder()

    @property
    def decoder(self) -> Decoder:
        """The underlying decoder, for its counters."""
        return self._decoder

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the line; return the raw request frames they complete, in order."""
        return [raw for frame, raw in self._decoder._take(data) if isinstance(frame, Request)]

    def idle(self) -> list[bytes]:
        """The line went quiet; see `Decoder.idle`."""
        return [raw for frame, raw in self._decoder._give_up() if isinstance(frame, Request)]
