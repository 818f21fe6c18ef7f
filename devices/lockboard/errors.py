"""The lock-board family's error types.

    DeviceError                                   (devices.errors)
    ├── FrameError
    │   └── LockboardError                        bytes that are not a valid lock-board frame, or a
    │       │                                     frame built with values the protocol cannot carry
    │       └── LockboardChecksumError            (also a ChecksumError) the SUM byte is wrong
    └── CompartmentError                          the simulated board was asked to do something a
                                                  cabinet cannot (a parcel through a shut door)

What went wrong is data: `LockboardError.reason` is a stable code from `Reason`, and ``data`` holds
(the first 64 bytes of) the offending bytes, as `FrameError` defines.
"""

from __future__ import annotations

import enum

from devices.errors import ChecksumError, DeviceError, FrameError

__all__ = ["CompartmentError", "LockboardChecksumError", "LockboardError", "Reason"]


class Reason(enum.StrEnum):
    """Stable machine-readable codes for `LockboardError.reason`."""

    INCOMPLETE = "incomplete"
    """Fewer bytes than the frame's command needs."""
    TRAILING_DATA = "trailing_data"
    """Bytes after a complete frame, where exactly one frame was expected."""
    NO_STX = "no_stx"
    """The first byte is not STX (02H)."""
    UNKNOWN_COMMAND = "unknown_command"
    """The CMD byte is none of the commands or replies this codec knows."""
    NO_ETX = "no_etx"
    """ETX (03H) is not where the command's length puts it."""
    BAD_CHECKSUM = "bad_checksum"
    """The SUM byte is not the 8-bit sum of the bytes before it."""
    BAD_ADDRESS = "bad_address"
    """The ADDR byte does not fit the command (32H must go to F0H, the all-boards address)."""
    OUT_OF_RANGE = "out_of_range"
    """A board, lock, time or baud-rate value outside what the protocol (or we) allow."""


class LockboardError(FrameError):
    """Bytes that are not a valid lock-board frame, or a frame that cannot be built.

    Raised for bytes received from the line and for frames built locally with invalid values alike:
    an invalid frame cannot exist on either side of the wire.
    """

    reason: Reason

    def __init__(self, reason: Reason, detail: str = "", *, data: bytes = b"") -> None:
        super().__init__(reason.value, data=data)
        # FrameError stores the plain string; keep the enum so callers can match on it.
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


class LockboardChecksumError(LockboardError, ChecksumError):
    """A well-shaped lock-board frame whose SUM byte does not match its contents."""

    def __init__(self, detail: str = "", *, data: bytes = b"") -> None:
        super().__init__(Reason.BAD_CHECKSUM, detail, data=data)


class CompartmentError(DeviceError, ValueError):
    """The simulated board or person was asked for something a real cabinet cannot do.

    For example a lock number the board does not have, or putting a parcel into a compartment whose
    door is shut. This is a bug in the test or scenario driving the model, never a wire problem.
    """
