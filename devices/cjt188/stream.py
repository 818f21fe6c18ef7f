"""Finding CJ/T 188 frames in a byte stream, through preambles and noise.

A frame announces its own length (``L`` at offset 10), so the hunt is simpler than Modbus RTU's,
but the same rules apply as on any noisy RS-485 / M-Bus line: a candidate starts at a 68H followed
by a known meter type, BCD-or-AA address bytes and a valid control code; it is a frame when the
byte ``L`` promises is 16H and CS matches. The earliest such frame wins; a byte that starts none is
noise (FEH preambles included); an incomplete candidate waits for its bytes unless a complete frame
turns up after it. However the bytes are sliced, the same frames come out (short of two
overlapping frames that both pass CS).
"""

from __future__ import annotations

from devices.cjt188.frame import (
    END,
    ERROR_FLAG,
    HEADER_SIZE,
    REPLY_FLAG,
    START,
    Frame,
    Function,
    MeterType,
    checksum,
    decode,
)

__all__ = ["Decoder", "RequestFramer"]

_NOT_A_START = -1
_UNDECIDED = 0
_TYPES = frozenset(MeterType)
_FUNCTIONS = frozenset(Function)


def _address_byte(byte: int) -> bool:
    return byte == 0xAA or (byte >> 4 <= 9 and byte & 0x0F <= 9)


def _length_at(buffer: bytearray, offset: int) -> int:
    available = len(buffer) - offset
    if buffer[offset] != START:
        return _NOT_A_START
    if available > 1 and buffer[offset + 1] not in _TYPES:
        return _NOT_A_START
    for i in range(2, min(available, 9)):
        if not _address_byte(buffer[offset + i]):
            return _NOT_A_START
    if available > 9:
        control = buffer[offset + 9]
        if control & 0x3F not in _FUNCTIONS or (control & ERROR_FLAG and not control & REPLY_FLAG):
            return _NOT_A_START
    if available <= 10:
        return _UNDECIDED
    return HEADER_SIZE + buffer[offset + 10] + 2


class _Hunter:
    """Takes bytes; hands out whole frames (as bytes), counting what it had to drop."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._quiet_until = 0  # see _drop: where the last counted damaged frame ends
        self.checksum_errors = 0
        self.discarded = 0

    def add(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        buffer = self._buffer
        waiting_from: int | None = None
        damaged: list[tuple[int, int]] = []
        offset = 0
        while offset < len(buffer):
            length = _length_at(buffer, offset)
            if length == _NOT_A_START:
                offset += 1
                continue
            if length == _UNDECIDED or offset + length > len(buffer):
                if waiting_from is None:
                    waiting_from = offset
                offset += 1
                continue
            end = offset + length
            if buffer[end - 1] == END:
                if checksum(memoryview(buffer)[offset : end - 2]) == buffer[end - 2]:
                    frame = bytes(buffer[offset:end])
                    self._drop(end, noise=offset, damaged=damaged)
                    return frame
                damaged.append((offset, length))
            offset += 1
        keep_from = len(buffer) if waiting_from is None else waiting_from
        self._drop(keep_from, noise=keep_from, damaged=damaged)
        return None

    def _drop(self, end: int, *, noise: int, damaged: list[tuple[int, int]]) -> None:
        # Count a damaged frame once: not again from an offset inside it, and not before its
        # bytes are really dropped (the ones kept are looked at again with more bytes).
        quiet_until = self._quiet_until
        for offset, length in damaged:
            if offset >= end:
                break
            if offset >= quiet_until:
                self.checksum_errors += 1
            quiet_until = max(quiet_until, offset + length)
        self._quiet_until = max(0, quiet_until - end)
        del self._buffer[:end]
        self.discarded += noise

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)


class Decoder:
    """Turns the bytes a master (or anyone on the line) receives into frames, skipping noise."""

    def __init__(self) -> None:
        self._hunter = _Hunter()

    def feed(self, data: bytes) -> list[Frame]:
        """Take newly received bytes; return every frame now complete, in order."""
        self._hunter.add(data)
        frames = []
        while (raw := self._hunter.next_frame()) is not None:
            frames.append(decode(raw))
        return frames

    @property
    def pending(self) -> bytes:
        """Bytes kept because they may begin a frame that has not fully arrived."""
        return self._hunter.pending

    @property
    def checksum_errors(self) -> int:
        """Frame-shaped candidates (ending in 16H) dropped for a wrong CS so far."""
        return self._hunter.checksum_errors

    @property
    def discarded(self) -> int:
        """Bytes dropped as noise (preambles included) so far."""
        return self._hunter.discarded


class RequestFramer:
    """Cuts a master's byte stream into request frames (a `devices.serialbus.RequestFramer`).

    Frames are returned without preamble. Replies (D7 set) on the line are consumed whole and
    not returned: they are other meters talking, not requests.
    """

    def __init__(self) -> None:
        self._hunter = _Hunter()

    def feed(self, data: bytes) -> list[bytes]:
        """Take newly received bytes; return every request frame now complete, in order."""
        self._hunter.add(data)
        frames = []
        while (raw := self._hunter.next_frame()) is not None:
            if not raw[9] & REPLY_FLAG:
                frames.append(raw)
        return frames

    @property
    def pending(self) -> bytes:
        """Bytes kept because they may begin a frame that has not fully arrived."""
        return self._hunter.pending

    @property
    def checksum_errors(self) -> int:
        """Frame-shaped candidates dropped for a wrong CS so far."""
        return self._hunter.checksum_errors
