"""The CJ/T 188-2004 link frame, typed, and its byte layout.

    [FE FE]  68  T  A0 … A6  C  L  DATA…  CS  16

* ``FE`` preamble bytes wake the receiver (two here; receivers skip any number);
* ``T`` the meter type, ``A0…A6`` the address: 14 BCD digits, low byte first, ``AA`` a wildcard;
* ``C`` the control code: D7 direction (1 = reply from the meter), D6 error reply, D5–D0 the
  function; ``L`` the number of data bytes;
* ``CS`` the sum of every byte from ``68`` to the last data byte, modulo 256 (no +33H, unlike
  DL/T 645), then ``16``.

What the data means (data identifier, serial number, payload) is `messages`; finding frames in a
stream is `stream`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from devices.cjt188.bcd import from_bcd
from devices.cjt188.errors import Cjt188ChecksumError, Cjt188Error

__all__ = [
    "END",
    "ERROR_FLAG",
    "HEADER_SIZE",
    "PREAMBLE",
    "REPLY_FLAG",
    "START",
    "WILDCARD_ADDRESS",
    "Frame",
    "Function",
    "MeterAddress",
    "MeterType",
    "checksum",
    "decode",
    "encode",
]

START, END, PREAMBLE = 0x68, 0x16, 0xFE
REPLY_FLAG, ERROR_FLAG = 0x80, 0x40
#: 68, T, A0–A6, C, L: the bytes before the data.
HEADER_SIZE = 11
_WILDCARD_BYTE = 0xAA


class MeterType(enum.IntEnum):
    """The ``T`` byte: what kind of meter is addressed."""

    COLD_WATER = 0x10
    DOMESTIC_HOT_WATER = 0x11
    DRINKING_WATER = 0x12
    RECLAIMED_WATER = 0x13
    HEAT_HEATING = 0x20
    HEAT_COOLING = 0x21
    GAS = 0x30
    ELECTRICITY = 0x40
    #: Any meter type (used with a wildcard address to find an unknown meter).
    WILDCARD = 0xAA


class Function(enum.IntEnum):
    """D5–D0 of the control code (the request's code; a reply sets D7, an error reply D6 too)."""

    READ_DATA = 0x01
    READ_ADDRESS = 0x03
    WRITE_DATA = 0x04
    READ_KEY_VERSION = 0x09
    WRITE_ADDRESS = 0x15
    WRITE_SYNC_DATA = 0x16  # "write mechanical/electronic synchronisation data"


@dataclass(frozen=True, slots=True)
class MeterAddress:
    """A meter address as printed on its nameplate: 14 digits, most significant first.

    A byte (two digits) may be ``AA`` instead, which matches anything there; ``AAAAAAAAAAAAAA``
    addresses every meter. On the wire the bytes go low byte first: ``00000000000012`` is
    ``12 00 00 00 00 00 00``.
    """

    digits: str

    def __post_init__(self) -> None:
        text = self.digits.upper() if isinstance(self.digits, str) else ""
        pairs = [text[i : i + 2] for i in range(0, len(text), 2)]
        if len(text) != 14 or not all(p == "AA" or (p.isascii() and p.isdigit()) for p in pairs):
            raise Cjt188Error(f"meter address {self.digits!r} is not 14 digits (or AA pairs)")
        object.__setattr__(self, "digits", text)

    def __str__(self) -> str:
        return self.digits

    @property
    def is_wildcard(self) -> bool:
        """Whether any byte is ``AA`` (so the address stands for more than one meter)."""
        return "AA" in self._pairs()

    def matches(self, address: MeterAddress) -> bool:
        """Whether a frame sent to ``self`` reaches the meter at ``address``."""
        return all(
            mine == "AA" or mine == theirs
            for mine, theirs in zip(self._pairs(), address._pairs(), strict=True)
        )

    def to_wire(self) -> bytes:
        """The seven address bytes, low byte first."""
        return bytes(
            _WILDCARD_BYTE if pair == "AA" else int(pair[0]) << 4 | int(pair[1])
            for pair in reversed(self._pairs())
        )

    @classmethod
    def from_wire(cls, data: bytes) -> MeterAddress:
        """The address in seven wire bytes (raises Cjt188Error on a byte that is not BCD or AA)."""
        if len(data) != 7:
            raise Cjt188Error("an address is 7 bytes", data=data)
        return cls(
            "".join(
                "AA" if byte == _WILDCARD_BYTE else f"{from_bcd(bytes([byte])):02d}"
                for byte in reversed(data)
            )
        )

    def _pairs(self) -> list[str]:
        return [self.digits[i : i + 2] for i in range(0, 14, 2)]


#: Every meter (of the addressed type): for reading the address of the one meter on a line.
WILDCARD_ADDRESS = MeterAddress("AA" * 7)


@dataclass(frozen=True, slots=True)
class Frame:
    """One CJ/T 188 frame, without preamble; ``data`` is everything between L and CS."""

    meter_type: MeterType
    address: MeterAddress
    function: Function
    data: bytes = b""
    reply: bool = False
    error: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "meter_type", MeterType(self.meter_type))
            object.__setattr__(self, "function", Function(self.function))
        except ValueError as exc:
            raise Cjt188Error(str(exc)) from None
        if not isinstance(self.address, MeterAddress):
            raise Cjt188Error(f"{self.address!r} is not a MeterAddress")
        object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > 0xFF:
            raise Cjt188Error(f"{len(self.data)} data bytes do not fit the length byte")
        if self.error and not self.reply:
            raise Cjt188Error("only a reply can be an error reply")

    @property
    def control(self) -> int:
        """The ``C`` byte."""
        return self.function | (REPLY_FLAG if self.reply else 0) | (ERROR_FLAG if self.error else 0)


def checksum(data: bytes | bytearray | memoryview) -> int:
    """CS: the sum of ``data`` (68H through the last data byte) modulo 256."""
    return sum(data) & 0xFF


def encode(frame: Frame, *, preamble: int = 2) -> bytes:
    """The bytes of ``frame``, after ``preamble`` FEH wake-up bytes."""
    body = (
        bytes([START, frame.meter_type])
        + frame.address.to_wire()
        + bytes([frame.control, len(frame.data)])
        + frame.data
    )
    return bytes([PREAMBLE]) * preamble + body + bytes([checksum(body), END])


def _control(control: int) -> tuple[Function, bool, bool]:
    try:
        function = Function(control & 0x3F)
    except ValueError:
        raise Cjt188Error(f"control code {control:02X}H has no known function") from None
    reply, error = bool(control & REPLY_FLAG), bool(control & ERROR_FLAG)
    if error and not reply:
        raise Cjt188Error(f"control code {control:02X}H is an error flag on a request")
    return function, reply, error


def decode(data: bytes) -> Frame:
    """Decode exactly one frame (after any FEH bytes). Raises Cjt188Error if it is not one."""
    data = bytes(data)
    body = data.lstrip(bytes([PREAMBLE]))
    if len(body) < HEADER_SIZE + 2 or body[0] != START:
        raise Cjt188Error("not a frame: no 68H header", data=data)
    size = HEADER_SIZE + body[10] + 2
    if len(body) != size or body[-1] != END:
        raise Cjt188Error(f"the length byte says {size} bytes, ending in 16H", data=data)
    if checksum(body[:-2]) != body[-2]:
        raise Cjt188ChecksumError("CS mismatch", data=data)
    try:
        meter_type = MeterType(body[1])
    except ValueError:
        raise Cjt188Error(f"meter type {body[1]:02X}H is unknown", data=data) from None
    function, reply, error = _control(body[9])
    return Frame(meter_type, MeterAddress.from_wire(body[2:9]), function, body[11:-2], reply, error)
