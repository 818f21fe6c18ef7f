"""Packed BCD, least significant byte first, as CJ/T 188 puts numbers and addresses on the wire."""

from __future__ import annotations

from devices.cjt188.errors import Cjt188Error

__all__ = ["from_bcd", "to_bcd"]


def to_bcd(number: int, size: int) -> bytes:
    """``number`` as ``size`` BCD bytes, low byte first (``1234`` → ``34 12``)."""
    if not 0 <= number < 100**size:
        raise Cjt188Error(f"{number} does not fit {size} BCD bytes")
    return bytes(((number // 100**i % 100) // 10) << 4 | number // 100**i % 10 for i in range(size))


def from_bcd(data: bytes) -> int:
    """The number in BCD bytes ``data`` (low byte first); raises Cjt188Error on a non-digit."""
    number = 0
    for byte in reversed(data):
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise Cjt188Error(f"{byte:02X}H is not a BCD byte", data=data)
        number = number * 100 + high * 10 + low
    return number
