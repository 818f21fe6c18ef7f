"""Errors of the CJ/T 188-2004 codec.

DeviceError
└── FrameError
    └── Cjt188Error                bytes (or fields) that are not a valid CJ/T 188 frame
        ├── Cjt188ChecksumError    also a ChecksumError: CS does not match
        └── UnsupportedDataError   a valid frame whose function / data identifier this codec
                                   has no message for (`function`, `di` and `ser` say which)
"""

from __future__ import annotations

from devices.errors import ChecksumError, FrameError

__all__ = ["Cjt188ChecksumError", "Cjt188Error", "UnsupportedDataError"]


class Cjt188Error(FrameError):
    """Bytes, or frame fields, that are not a valid CJ/T 188-2004 frame."""


class Cjt188ChecksumError(Cjt188Error, ChecksumError):
    """A frame whose CS byte is not the sum of its bytes from 68H to the last data byte."""


class UnsupportedDataError(Cjt188Error):
    """A well-formed frame asking for something this codec (or meter) does not do.

    A meter answers such a request with an error reply (control code with D6 set) echoing `ser`,
    so the error carries it, with the `function` and data identifier `di` that were asked for.
    """

    def __init__(self, reason: str, *, function: int, di: int, ser: int, data: bytes = b"") -> None:
        super().__init__(reason, data=data)
        self.function = function
        self.di = di
        self.ser = ser
