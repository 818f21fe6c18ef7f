"""Finding RTU frames in a byte stream: where a frame ends, and what to skip.

RTU has no delimiter. On a clean line a frame ends with 3.5 character times of silence, but USB
adapters and RS-485-to-Ethernet servers destroy that timing, so frames are found by length: the
function code (and, for some functions, a byte count) says how long a frame is, and the CRC says
whether those bytes really are one.

* The master knows what it asked, so `ReplyDecoder(expect=request)` only accepts a frame that can
  answer that request: the right unit, the request's function (or its exception), and for a read
  the right byte count. Anything else is skipped.
* A device does not know what it will be asked. `RequestFramer` frames requests of any unit by the
  request lengths of the public function codes — also the ones this codec has no typed frame for,
  so that a device can refuse them with exception 01 instead of staying mute.

Both hunt through garbage the same way, as a receiver on a noisy RS-485 line must: a frame may be
preceded, interrupted or followed by noise. The earliest complete frame with a correct CRC wins;
a byte that starts no such frame is dropped; an incomplete candidate is kept until its bytes
arrive — unless a complete, correct frame turns up after it, which then wins and the candidate is
dropped as the noise it must have been. Whole buffer, byte by byte, or in any other slicing, the
same bytes give the same frames (short of two overlapping frames that both have a correct CRC,
which leaves a 1-in-65536 chance per overlapping candidate of reading the inner one).
"""

from __future__ import annotations

from collections.abc import Callable

from devices.modbus.codes import BROADCAST, EXCEPTION_FLAG, MAX_UNIT, FunctionCode
from devices.modbus.crc import crc16
from devices.modbus.errors import ModbusError
from devices.modbus.frames import (
    ReadRequest,
    Reply,
    Request,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
    decode_reply,
)

__all__ = ["ReplyDecoder", "RequestFramer", "inter_frame_gap"]

_NOT_A_START = -1  # no frame can start at this offset
_UNDECIDED = 0  # a frame may start here, but more bytes are needed to know its length

# Request lengths of the public function codes (Modbus application protocol v1.1b3): a fixed
# ADU length, or the offset of the byte count that, plus header and CRC, gives it.
_FIXED_REQUEST_LENGTH = {
    0x01: 8,  # read coils
    0x02: 8,  # read discrete inputs
    0x03: 8,
    0x04: 8,
    0x05: 8,  # write single coil
    0x06: 8,
    0x07: 4,  # read exception status
    0x08: 8,  # diagnostics (sub-function + one data word)
    0x0B: 4,  # get comm event counter
    0x0C: 4,  # get comm event log
    0x11: 4,  # report server id
    0x16: 10,  # mask write register
    0x18: 6,  # read FIFO queue
}
_BYTE_COUNT_OFFSET = {
    0x0F: 6,  # write multiple coils
    0x10: 6,
    0x17: 10,  # read/write multiple registers
}

_LengthAt = Callable[[bytearray, int], int]


class _Hunter:
    """The shared hunt: returns CRC-correct frames whose length ``length_at`` predicts."""

    def __init__(self, length_at: _LengthAt) -> None:
        self._length_at = length_at
        self._buffer = bytearray()
        # Bad-CRC candidates that start inside one already counted are the same damaged frame
        # seen from another offset; this is where the last counted one ends.
        self._quiet_until = 0
        #: Damaged frames dropped because their CRC was wrong (a line-quality statistic).
        self.crc_errors = 0
        #: Bytes dropped as noise, damaged frames included.
        self.discarded = 0

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)

    def add(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        buffer = self._buffer
        waiting_from: int | None = None
        bad_crc: list[tuple[int, int]] = []
        offset = 0
        while offset < len(buffer):
            length = self._length_at(buffer, offset)
            if length == _NOT_A_START:
                offset += 1
                continue
            if length == _UNDECIDED or offset + length > len(buffer):
                if waiting_from is None:
                    waiting_from = offset
                offset += 1
                continue
            if crc16(memoryview(buffer)[offset : offset + length]) == 0:
                frame = bytes(buffer[offset : offset + length])
                self._drop(offset + length, noise=offset, bad_crc=bad_crc)
                return frame
            bad_crc.append((offset, length))
            offset += 1
        keep_from = len(buffer) if waiting_from is None else waiting_from
        self._drop(keep_from, noise=keep_from, bad_crc=bad_crc)
        return None

    def _drop(self, end: int, *, noise: int, bad_crc: list[tuple[int, int]]) -> None:
        # Only candidates whose bytes are now dropped are counted; the others are looked at
        # again when more bytes arrive, so none is counted twice.
        quiet_until = self._quiet_until
        for offset, length in bad_crc:
            if offset >= end:
                break
            if offset >= quiet_until:
                self.crc_errors += 1
            quiet_until = max(quiet_until, offset + length)
        self._quiet_until = max(0, quiet_until - end)
        del self._buffer[:end]
        self.discarded += noise


def _request_length(buffer: bytearray, offset: int) -> int:
    if buffer[offset] > MAX_UNIT:
        return _NOT_A_START
    if len(buffer) - offset < 2:
        return _UNDECIDED
    function = buffer[offset + 1]
    if (fixed := _FIXED_REQUEST_LENGTH.get(function)) is not None:
        return fixed
    if (position := _BYTE_COUNT_OFFSET.get(function)) is not None:
        if len(buffer) - offset <= position:
            return _UNDECIDED
        return position + 1 + buffer[offset + position] + 2
    return _NOT_A_START


class RequestFramer:
    """Cuts a master's byte stream into request ADUs (any unit), skipping noise.

    A device-side `devices.serialbus.RequestFramer`: each returned frame has a correct CRC and the
    length its function code calls for; whether it is addressed to a device, and whether that
    device supports it, is for `decode_request` and the device to say.
    """

    def __init__(self) -> None:
        self._hunter = _Hunter(_request_length)

    def feed(self, data: bytes) -> list[bytes]:
        """Take newly received bytes; return every request frame now complete, in order."""
        self._hunter.add(data)
        frames = []
        while (frame := self._hunter.next_frame()) is not None:
            frames.append(frame)
        return frames

    @property
    def pending(self) -> bytes:
        """Bytes kept because they may begin a frame that has not fully arrived."""
        return self._hunter.pending

    @property
    def crc_errors(self) -> int:
        """Complete candidate frames dropped for a wrong CRC so far."""
        return self._hunter.crc_errors

    @property
    def discarded(self) -> int:
        """Bytes dropped as noise so far."""
        return self._hunter.discarded


class ReplyDecoder:
    """Finds the replies to one request in the bytes a master receives, skipping noise.

    Only a frame that can answer ``expect`` is taken: from its unit, with its function code (or
    that code's exception), and for a read exactly ``2 × count`` data bytes. A CRC-correct frame
    of that shape that still contradicts the request (a write echo with another address or value)
    is the device's fault and raises `ModbusError`; its bytes are consumed first, so the decoder
    stays usable. Everything else is noise. A master normally stops at the first reply.
    """

    def __init__(self, expect: Request) -> None:
        if expect.unit == BROADCAST:
            raise ModbusError("a broadcast request gets no reply")
        self.expect = expect
        self._hunter = _Hunter(self._reply_length)
        function = (
            expect.function
            if isinstance(expect, ReadRequest)
            else FunctionCode.WRITE_SINGLE_REGISTER
            if isinstance(expect, WriteSingleRequest)
            else FunctionCode.WRITE_MULTIPLE_REGISTERS
        )
        self._function = int(function)
        self._normal_length = 5 + 2 * expect.count if isinstance(expect, ReadRequest) else 8

    def feed(self, data: bytes) -> list[Reply]:
        """Take newly received bytes; return every reply to the request now complete."""
        self._hunter.add(data)
        replies = []
        while (frame := self._hunter.next_frame()) is not None:
            replies.append(self._check(decode_reply(frame)))
        return replies

    @property
    def pending(self) -> bytes:
        """Bytes kept because they may begin a reply that has not fully arrived."""
        return self._hunter.pending

    @property
    def crc_errors(self) -> int:
        """Complete reply-shaped candidates dropped for a wrong CRC so far."""
        return self._hunter.crc_errors

    @property
    def discarded(self) -> int:
        """Bytes dropped as noise so far."""
        return self._hunter.discarded

    def _reply_length(self, buffer: bytearray, offset: int) -> int:
        if buffer[offset] != self.expect.unit:
            return _NOT_A_START
        if len(buffer) - offset < 2:
            return _UNDECIDED
        function = buffer[offset + 1]
        if function == self._function | EXCEPTION_FLAG:
            return 5
        if function != self._function:
            return _NOT_A_START
        if isinstance(self.expect, ReadRequest):
            if len(buffer) - offset < 3:
                return _UNDECIDED
            if buffer[offset + 2] != 2 * self.expect.count:
                return _NOT_A_START
        return self._normal_length

    def _check(self, reply: Reply) -> Reply:
        expect = self.expect
        if isinstance(expect, WriteSingleRequest) and isinstance(reply, WriteSingleReply):
            echoed = (reply.address, reply.value) == (expect.address, expect.value)
        elif isinstance(expect, WriteMultipleRequest) and isinstance(reply, WriteMultipleReply):
            echoed = (reply.address, reply.count) == (expect.address, len(expect.values))
        else:
            echoed = True  # reads and exceptions were matched by their header already
        if not echoed:
            raise ModbusError(f"unit {reply.unit}'s reply {reply} does not answer {expect}")
        return reply


def inter_frame_gap(baudrate: int, *, bits_per_character: int = 11) -> float:
    """The silence (seconds) that ends an RTU frame: 3.5 characters, at least 1.75 ms.

    Modbus over serial line v1.02 §2.5.1.1 fixes 1.75 ms above 19200 baud. An RTU character is
    11 bits (start, 8 data, parity or a second stop bit, stop) in every legal line setting.
    """
    if baudrate <= 0:
        raise ValueError(f"baud rate {baudrate!r} is not positive")
    if baudrate > 19200:
        return 0.00175
    return 3.5 * bits_per_character / baudrate
