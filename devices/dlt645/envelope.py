"""The DL/T 645 envelope: preamble, start, address, control, length, +33H data, checksum, end.

    [FE FE FE FE]  68  A0..A5  68  C  L  DATA+33H (L bytes)  CS  16

The preamble (0-4 ``FE``) wakes the receiver and is not part of the frame or its checksum. The
checksum is the sum, modulo 256, of every byte from the first ``68`` to the last data byte. Data
bytes travel with 33H added, so that an idle line's zeros never look like data.

This module knows the envelope only; `codec` gives its contents meaning, `decoder` hunts for
envelopes in a noisy stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.dlt645.address import ADDRESS_SIZE, Address, is_address_byte
from devices.dlt645.errors import Dlt645ChecksumError, Dlt645Error, Reason

__all__ = [
    "END",
    "HEADER_SIZE",
    "MAX_DATA",
    "MAX_FRAME",
    "MAX_PREAMBLE",
    "OVERHEAD",
    "START",
    "WAKE_UP",
    "Envelope",
    "checksum",
    "pack",
    "plausible_header",
    "unpack",
]

MAX_DATA = 200
"""The longest data field the standard allows (a read reply); a longer L is a framing error."""
START = 0x68
END = 0x16
WAKE_UP = 0xFE
MAX_PREAMBLE = 4
HEADER_SIZE = 10
"""``68``, six address bytes, ``68``, C and L."""
OVERHEAD = HEADER_SIZE + 2
"""Header plus checksum and end."""
MAX_FRAME = MAX_PREAMBLE + OVERHEAD + MAX_DATA
"""The longest frame on the wire, preamble included."""
_OFFSET = 0x33


def checksum(frame: bytes | bytearray | memoryview) -> int:
    """The modulo-256 sum of `frame` (from the first 68 through the last data byte)."""
    return sum(frame) & 0xFF


@dataclass(frozen=True, slots=True)
class Envelope:
    """A frame's address, control byte and data (the +33H already taken off)."""

    address: Address
    control: int
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.address, Address):
            raise Dlt645Error(Reason.BAD_FIELD, f"{self.address!r} is not an Address")
        if isinstance(self.control, bool) or not isinstance(self.control, int):
            raise Dlt645Error(Reason.BAD_FIELD, f"control {self.control!r} is not an int")
        if not 0 <= self.control <= 0xFF:
            raise Dlt645Error(Reason.BAD_FIELD, f"control {self.control} is not a byte")
        if not isinstance(self.data, bytes):
            raise Dlt645Error(Reason.BAD_FIELD, f"data {self.data!r} is not bytes")
        if len(self.data) > MAX_DATA:
            raise Dlt645Error(Reason.TOO_LONG, f"{len(self.data)} data bytes, at most {MAX_DATA}")


def pack(envelope: Envelope, *, preamble: int = 0) -> bytes:
    """The wire bytes of `envelope`, after `preamble` wake-up bytes (0-4 ``FE``)."""
    if isinstance(preamble, bool) or not isinstance(preamble, int):
        raise Dlt645Error(Reason.BAD_FIELD, f"preamble {preamble!r} is not an int")
    if not 0 <= preamble <= MAX_PREAMBLE:
        raise Dlt645Error(Reason.BAD_FIELD, f"preamble of {preamble} bytes, not 0-4")
    body = bytearray((START, *envelope.address.wire, START, envelope.control, len(envelope.data)))
    body += bytes((b + _OFFSET) & 0xFF for b in envelope.data)
    body += bytes((checksum(body), END))
    return bytes([WAKE_UP]) * preamble + bytes(body)


def plausible_header(buf: bytes | bytearray, start: int) -> bool:
    """Whether the bytes from `start` (a ``68``) can begin a frame, as far as they have arrived.

    Checks the address bytes (BCD or ``AA``), the second ``68`` and L ≤ 200: garbage fails within
    a few bytes, so a stream decoder need not wait for a bogus L's worth of bytes.
    """
    end = min(len(buf), start + HEADER_SIZE)
    for i in range(start + 1, min(end, start + 1 + ADDRESS_SIZE)):
        if not is_address_byte(buf[i]):
            return False
    if end > start + 7 and buf[start + 7] != START:
        return False
    return not (end > start + 9 and buf[start + 9] > MAX_DATA)


def unpack(raw: bytes) -> Envelope:
    """The envelope of exactly one frame (0-4 ``FE`` before it allowed, nothing after)."""
    buf = bytes(raw)
    skip = 0
    while skip < len(buf) and buf[skip] == WAKE_UP and skip < MAX_PREAMBLE:
        skip += 1
    frame = buf[skip:]
    if len(frame) < OVERHEAD:
        if frame[:1] not in (b"", bytes([START])):
            raise Dlt645Error(Reason.NO_START, "no 68 where the frame should start", data=buf)
        raise Dlt645Error(Reason.TRUNCATED, f"{len(frame)} bytes, a frame has 12 or more", data=buf)
    if frame[0] != START or frame[7] != START:
        raise Dlt645Error(Reason.NO_START, "not 68 A0..A5 68", data=buf)
    address = Address.from_wire(frame[1:7])
    length = frame[9]
    if length > MAX_DATA:
        raise Dlt645Error(Reason.TOO_LONG, f"L = {length}, at most {MAX_DATA}", data=buf)
    size = OVERHEAD + length
    if len(frame) < size:
        raise Dlt645Error(Reason.TRUNCATED, f"{len(frame)} bytes, L says {size}", data=buf)
    if len(frame) > size:
        raise Dlt645Error(Reason.TRAILING_DATA, f"{len(frame) - size} bytes after 16", data=buf)
    if checksum(frame[: HEADER_SIZE + length]) != frame[HEADER_SIZE + length]:
        raise Dlt645ChecksumError(Reason.BAD_CHECKSUM, data=buf)
    if frame[-1] != END:
        raise Dlt645Error(Reason.NO_END, f"{frame[-1]:02X} where 16 should be", data=buf)
    data = bytes((b - _OFFSET) & 0xFF for b in frame[HEADER_SIZE : HEADER_SIZE + length])
    return Envelope(address, frame[8], data)
