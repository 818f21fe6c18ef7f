"""The error base of every device family.

    DeviceError
    └── FrameError            bytes from (or for) a device are not a valid frame
        ├── ChecksumError     a frame whose checksum / CRC does not match
        └── (each family's own subclasses, e.g. devices.dlt645.Dlt645Error)

A codec either returns a typed frame or raises its family's :class:`FrameError` subclass — never
anything else, whatever the input (this is fuzzed).
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DeviceError", "FrameError"]


class DeviceError(Exception):
    """Base of every error raised by :mod:`devices`."""


class FrameError(DeviceError, ValueError):
    """Bytes that are not a valid frame of the protocol."""

    def __init__(self, reason: str, *, data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = bytes(data[:64])


class ChecksumError(FrameError):
    """A well-shaped frame whose checksum does not match its contents."""
