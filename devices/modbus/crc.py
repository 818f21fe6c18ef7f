"""CRC-16/MODBUS: polynomial 0x8005 reflected (0xA001), initial value 0xFFFF, no final XOR.

The CRC goes on the wire low byte first. Because the algorithm is reflected, running it over a
whole ADU, CRC included, leaves 0 exactly when the CRC is right — the frame hunters use that.
"""

from __future__ import annotations

__all__ = ["crc16", "with_crc"]


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC-16/MODBUS of ``data`` (0 for a complete ADU whose CRC is right)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """Append the CRC to ``body`` (unit id, function code and data), low byte first."""
    return body + crc16(body).to_bytes(2, "little")
