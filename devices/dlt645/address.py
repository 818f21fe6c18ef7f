"""Meter addresses: the 12-digit nameplate number and its six wire bytes.

The nameplate reads most significant digits first; the wire carries the same BCD bytes low byte
first, so nameplate ``001500076004`` is ``04 60 07 00 15 00`` on the wire. Two addresses are
special: ``999999999999`` is the broadcast address (time sync, freeze; no meter replies), and a byte
``AA`` is a wildcard — ``AAAAAAAAAAAA`` reaches whichever meter is on the line (read address), and
high bytes padded with ``AA`` shorten an address (``AAAA00076004`` reaches meter 001500076004).
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.dlt645.errors import Dlt645Error, Reason

__all__ = ["ADDRESS_SIZE", "BROADCAST", "WILDCARD", "Address", "is_address_byte"]

ADDRESS_SIZE = 6
_WILDCARD_BYTE = 0xAA


def is_address_byte(value: int) -> bool:
    """Whether one wire byte may appear in an address: two BCD digits, or the ``AA`` wildcard."""
    return value == _WILDCARD_BYTE or (value >> 4 <= 9 and value & 0x0F <= 9)


@dataclass(frozen=True, slots=True)
class Address:
    """A meter address, held as its nameplate string: 12 digits, with ``AA`` for wildcard bytes."""

    nameplate: str

    def __post_init__(self) -> None:
        text = self.nameplate
        if not isinstance(text, str) or len(text) != 2 * ADDRESS_SIZE:
            raise Dlt645Error(Reason.BAD_ADDRESS, f"{text!r} is not 12 characters")
        for i in range(0, len(text), 2):
            pair = text[i : i + 2]
            if pair != "AA" and not (pair.isascii() and pair.isdigit()):
                raise Dlt645Error(Reason.BAD_ADDRESS, f"{text!r}: {pair!r} is neither BCD nor AA")

    @classmethod
    def from_wire(cls, wire: bytes) -> Address:
        """The address whose six wire bytes (low byte first) are `wire`."""
        if len(wire) != ADDRESS_SIZE:
            raise Dlt645Error(Reason.BAD_ADDRESS, f"{len(wire)} bytes, not 6", data=wire)
        if not all(is_address_byte(b) for b in wire):
            raise Dlt645Error(Reason.BAD_ADDRESS, "neither BCD nor AA", data=wire)
        return cls(bytes(reversed(wire)).hex().upper())

    @property
    def wire(self) -> bytes:
        """The six bytes as sent: low byte (last two nameplate digits) first."""
        return bytes(reversed(bytes.fromhex(self.nameplate)))

    @property
    def is_broadcast(self) -> bool:
        """``999999999999``: every meter listens, none replies."""
        return self.nameplate == "9" * 12

    @property
    def is_wildcard(self) -> bool:
        """``AAAAAAAAAAAA``: whichever meter is on the line."""
        return self.nameplate == "A" * 12

    def reaches(self, meter: Address) -> bool:
        """Whether a request sent to this address is for `meter` (``AA`` bytes match anything)."""
        mine, theirs = self.wire, meter.wire
        return all(a in (b, _WILDCARD_BYTE) for a, b in zip(mine, theirs, strict=True))

    def __str__(self) -> str:
        return self.nameplate


BROADCAST = Address("999999999999")
"""The broadcast address: time sync and freeze reach every meter, and none replies."""

WILDCARD = Address("AAAAAAAAAAAA")
"""The all-wildcard address, for read address (13H) on a line with one meter."""
