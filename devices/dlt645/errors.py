"""The errors of the DL/T 645 codec and meter model.

    FrameError (devices.errors)
    └── Dlt645Error            bytes that are not a valid DL/T 645 frame or value, or a frame or
        │                      value built locally that the protocol cannot carry
        └── Dlt645ChecksumError   a well-shaped frame whose checksum does not match
                                  (also a devices.errors.ChecksumError)

What went wrong is data: `reason` is a stable code from `Reason` (a `str`, as `FrameError` asks),
`data` holds up to 64 of the offending bytes. Whose fault it was follows from where it was raised:
`decode` and the value decoders blame the peer's bytes, the frame constructors and value encoders
blame the caller.
"""

from __future__ import annotations

import enum

from devices.errors import ChecksumError, FrameError

__all__ = ["Dlt645ChecksumError", "Dlt645Error", "Reason"]


class Reason(enum.StrEnum):
    """Stable machine-readable codes for `Dlt645Error.reason`."""

    TRUNCATED = "truncated"
    """Fewer bytes than the frame or value needs."""
    TRAILING_DATA = "trailing_data"
    """Bytes after the end of the one frame `decode` was given."""
    NO_START = "no_start"
    """The frame does not open with ``68 A0..A5 68`` (after an optional ``FE`` preamble)."""
    NO_END = "no_end"
    """The byte after the checksum is not ``16``."""
    BAD_CHECKSUM = "bad_checksum"
    """The checksum does not match the frame."""
    TOO_LONG = "too_long"
    """The data field is longer than the protocol's 200 bytes."""
    BAD_ADDRESS = "bad_address"
    """An address that is neither BCD nor ``AA`` padding."""
    BAD_LENGTH = "bad_length"
    """A data field whose length does not fit its control code."""
    BAD_FIELD = "bad_field"
    """A field out of its range (a function code, a sequence number, a password, ...)."""
    BAD_BCD = "bad_bcd"
    """A nibble above 9 where the format wants decimal digits."""
    BAD_DATE = "bad_date"
    """A date or time that does not exist, or is outside 2000-2099."""
    OUT_OF_RANGE = "out_of_range"
    """A value the format cannot carry (too large, too precise, wrong sign)."""
    BAD_VALUE = "bad_value"
    """A value of the wrong type for its format."""
    UNKNOWN_IDENTIFIER = "unknown_identifier"
    """A data identifier that is not in the table, so its format is unknown."""


class Dlt645Error(FrameError):
    """A DL/T 645 frame, field or value is invalid."""

    reason: Reason

    def __init__(self, reason: Reason, detail: str = "", *, data: bytes = b"") -> None:
        super().__init__(reason.value, data=data)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.reason.value if not self.detail else f"{self.reason.value}: {self.detail}"


class Dlt645ChecksumError(Dlt645Error, ChecksumError):
    """A DL/T 645 frame whose checksum does not match its contents."""
