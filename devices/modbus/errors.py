"""Errors of the Modbus RTU codec, its register maps and its meter model.

    DeviceError
    ├── FrameError
    │   └── ModbusError               bytes (or values) that cannot be a Modbus RTU frame
    │       ├── ModbusCrcError        also a ChecksumError: the CRC does not match
    │       └── IllegalRequestError   a well-framed request a server must refuse with an
    │                                 exception reply (`code` says which)
    ├── ExceptionReplyError           the device answered with an exception reply
    └── RegisterValueError            a value that does not fit its register entry (also a
                                      ValueError)

Each carries what went wrong as attributes, so a poller can count and report without parsing
messages.
"""

from __future__ import annotations

from devices.errors import ChecksumError, DeviceError, FrameError

__all__ = [
    "ExceptionReplyError",
    "IllegalRequestError",
    "ModbusCrcError",
    "ModbusError",
    "RegisterValueError",
]


class ModbusError(FrameError):
    """Bytes, or frame fields, that are not a valid Modbus RTU frame."""


class ModbusCrcError(ModbusError, ChecksumError):
    """A frame whose CRC-16/MODBUS does not match its contents."""


class IllegalRequestError(ModbusError):
    """A request that is well framed but that a server must refuse.

    Modbus says what the refusal is: an exception reply from `unit` for `function` with `code`
    (01 unknown function, 02 address out of range, 03 bad quantity). The error carries those so a
    server can answer without looking at the bytes again. Nobody answers a broadcast (`unit` 0).
    """

    def __init__(
        self, reason: str, *, unit: int, function: int, code: int, data: bytes = b""
    ) -> None:
        super().__init__(reason, data=data)
        self.unit = unit
        self.function = function
        self.code = code


class ExceptionReplyError(DeviceError):
    """The device refused a request with an exception reply (the device's verdict, not noise)."""

    def __init__(self, unit: int, function: int, code: int) -> None:
        super().__init__(f"unit {unit} refused function {function:#04x} with exception {code:#04x}")
        self.unit = unit
        self.function = function
        self.code = code


class RegisterValueError(DeviceError, ValueError):
    """A value that a register entry cannot hold (out of range, or not a number)."""

    def __init__(self, reason: str, *, name: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.reason = reason
        self.name = name
