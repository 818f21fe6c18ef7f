"""Typed Modbus RTU frames for the register functions, and their byte layout.

An RTU ADU is ``unit | function | data | CRC (low byte first)``:

    read request      u 03|04 addr:2 count:2 crc:2                  8 bytes
    read reply        u 03|04 bytecount:1 registers:2n crc:2        5 + 2n
    write single      u 06 addr:2 value:2 crc:2                     8 (the reply echoes it)
    write multiple    u 10 addr:2 count:2 bytecount:1 values:2n crc  9 + 2n
    its reply         u 10 addr:2 count:2 crc:2                     8
    exception reply   u 80|fc code:1 crc:2                          5

Frames are frozen and validate in their constructor, so an invalid one cannot exist; the decoders
build frames through the same constructors, so the rules live in one place. Whole-ADU decoding is
here; finding ADUs in a byte stream is `framing`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import assert_never

from devices.modbus.codes import (
    BROADCAST,
    EXCEPTION_FLAG,
    MAX_READ_COUNT,
    MAX_UNIT,
    MAX_WRITE_COUNT,
    MIN_UNIT,
    READ_FUNCTIONS,
    ExceptionCode,
    FunctionCode,
)
from devices.modbus.crc import crc16, with_crc
from devices.modbus.errors import IllegalRequestError, ModbusCrcError, ModbusError

__all__ = [
    "ExceptionReply",
    "Frame",
    "ReadReply",
    "ReadRequest",
    "Reply",
    "Request",
    "WriteMultipleReply",
    "WriteMultipleRequest",
    "WriteSingleReply",
    "WriteSingleRequest",
    "decode_reply",
    "decode_request",
    "encode",
]

_ADDRESS_SPACE = 0x10000


def _unit(unit: int, *, broadcast: bool) -> None:
    low = BROADCAST if broadcast else MIN_UNIT
    if not isinstance(unit, int) or not low <= unit <= MAX_UNIT:
        raise ModbusError(f"unit id {unit!r} is outside {low}–{MAX_UNIT}")


def _word(value: int, what: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ModbusError(f"{what} {value!r} is not a 16-bit value")


def _read_function(function: int) -> FunctionCode:
    if function not in READ_FUNCTIONS:
        raise ModbusError(f"function {function!r} is not a register read (03 or 04)")
    return FunctionCode(function)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """FC03 (holding) or FC04 (input): read ``count`` registers from ``address``.

    ``function`` may be given as a plain int; it is checked and kept as a `FunctionCode`.
    """

    unit: int
    function: FunctionCode
    address: int
    count: int

    def __post_init__(self) -> None:
        _unit(self.unit, broadcast=False)
        object.__setattr__(self, "function", _read_function(self.function))
        _word(self.address, "address")
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_READ_COUNT:
            raise IllegalRequestError(
                f"a read asks for 1–{MAX_READ_COUNT} registers, not {self.count!r}",
                unit=self.unit,
                function=self.function,
                code=ExceptionCode.ILLEGAL_DATA_VALUE,
            )
        if self.address + self.count > _ADDRESS_SPACE:
            raise IllegalRequestError(
                "the read runs past register 0xFFFF",
                unit=self.unit,
                function=self.function,
                code=ExceptionCode.ILLEGAL_DATA_ADDRESS,
            )


@dataclass(frozen=True, slots=True)
class WriteSingleRequest:
    """FC06: write one holding register. Unit 0 broadcasts it (no device answers)."""

    unit: int
    address: int
    value: int

    def __post_init__(self) -> None:
        _unit(self.unit, broadcast=True)
        _word(self.address, "address")
        _word(self.value, "register value")


@dataclass(frozen=True, slots=True)
class WriteMultipleRequest:
    """FC10: write consecutive holding registers. Unit 0 broadcasts it."""

    unit: int
    address: int
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        _unit(self.unit, broadcast=True)
        _word(self.address, "address")
        object.__setattr__(self, "values", tuple(self.values))
        if not 1 <= len(self.values) <= MAX_WRITE_COUNT:
            raise IllegalRequestError(
                f"a write carries 1–{MAX_WRITE_COUNT} registers, not {len(self.values)}",
                unit=self.unit,
                function=FunctionCode.WRITE_MULTIPLE_REGISTERS,
                code=ExceptionCode.ILLEGAL_DATA_VALUE,
            )
        for value in self.values:
            _word(value, "register value")
        if self.address + len(self.values) > _ADDRESS_SPACE:
            raise IllegalRequestError(
                "the write runs past register 0xFFFF",
                unit=self.unit,
                function=FunctionCode.WRITE_MULTIPLE_REGISTERS,
                code=ExceptionCode.ILLEGAL_DATA_ADDRESS,
            )


@dataclass(frozen=True, slots=True)
class ReadReply:
    """The registers an FC03/FC04 read returned, in order."""

    unit: int
    function: FunctionCode
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        _unit(self.unit, broadcast=False)
        object.__setattr__(self, "function", _read_function(self.function))
        object.__setattr__(self, "values", tuple(self.values))
        if not 1 <= len(self.values) <= MAX_READ_COUNT:
            raise ModbusError(f"a read reply holds 1–{MAX_READ_COUNT} registers")
        for value in self.values:
            _word(value, "register value")


@dataclass(frozen=True, slots=True)
class WriteSingleReply:
    """The echo of an FC06 write."""

    unit: int
    address: int
    value: int

    def __post_init__(self) -> None:
        _unit(self.unit, broadcast=False)
        _word(self.address, "address")
        _word(self.value, "register value")


@dataclass(frozen=True, slots=True)
class WriteMultipleReply:
    """The acknowledgement of an FC10 write: where it started and how many registers."""

    unit: int
    address: int
    count: int

    def __post_init__(self) -> None:
        _unit(self.unit, broadcast=False)
        _word(self.address, "address")
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_WRITE_COUNT:
            raise ModbusError(f"a write reply counts 1–{MAX_WRITE_COUNT} registers")


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """A refusal: ``function`` is the request's function code (without the 0x80 flag).

    ``function`` and ``code`` are plain ints because a device may refuse any function code,
    including ones this codec has no frame for, with a vendor's own exception codes.
    """

    unit: int
    function: int
    code: int

    def __post_init__(self) -> None:
        _unit(self.unit, broadcast=False)
        if not isinstance(self.function, int) or not 1 <= self.function < EXCEPTION_FLAG:
            raise ModbusError(f"function code {self.function!r} is outside 1–127")
        if not isinstance(self.code, int) or not 1 <= self.code <= 0xFF:
            raise ModbusError(f"exception code {self.code!r} is outside 1–255")

    @property
    def exception(self) -> ExceptionCode | None:
        """The standard meaning of `code`, if it has one."""
        try:
            return ExceptionCode(self.code)
        except ValueError:
            return None


Request = ReadRequest | WriteSingleRequest | WriteMultipleRequest
Reply = ReadReply | WriteSingleReply | WriteMultipleReply | ExceptionReply
Frame = Request | Reply


def encode(frame: Frame) -> bytes:
    """Return the RTU ADU of ``frame``, CRC included."""
    match frame:
        case ReadRequest(unit, function, address, count):
            body = struct.pack(">BBHH", unit, function, address, count)
        case WriteSingleRequest(unit, address, value) | WriteSingleReply(unit, address, value):
            body = struct.pack(">BBHH", unit, FunctionCode.WRITE_SINGLE_REGISTER, address, value)
        case WriteMultipleRequest(unit, address, values):
            body = struct.pack(
                f">BBHHB{len(values)}H",
                unit,
                FunctionCode.WRITE_MULTIPLE_REGISTERS,
                address,
                len(values),
                2 * len(values),
                *values,
            )
        case ReadReply(unit, function, values):
            body = struct.pack(f">BBB{len(values)}H", unit, function, 2 * len(values), *values)
        case WriteMultipleReply(unit, address, count):
            body = struct.pack(">BBHH", unit, FunctionCode.WRITE_MULTIPLE_REGISTERS, address, count)
        case ExceptionReply(unit, function, code):
            body = struct.pack(">BBB", unit, function | EXCEPTION_FLAG, code)
        case _:
            assert_never(frame)
    return with_crc(body)


def _checked(adu: bytes, minimum: int) -> None:
    if len(adu) < minimum:
        raise ModbusError(f"{len(adu)} bytes is shorter than any such frame", data=adu)
    if crc16(adu) != 0:
        raise ModbusCrcError("CRC mismatch", data=adu)


def _length(adu: bytes, expected: int, what: str) -> None:
    if len(adu) != expected:
        raise ModbusError(f"{what} is {expected} bytes, not {len(adu)}", data=adu)


def _words(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f">{len(data) // 2}H", data)


def decode_request(adu: bytes) -> Request:
    """Decode one whole request ADU.

    Raises `ModbusCrcError` for a bad CRC, `IllegalRequestError` for a request a server must
    refuse (unknown function, bad quantity, range past 0xFFFF), and `ModbusError` otherwise.
    """
    adu = bytes(adu)
    _checked(adu, 4)
    unit, function = adu[0], adu[1]
    if unit > MAX_UNIT:
        raise ModbusError(f"unit id {unit} is reserved", data=adu)
    if function == 0 or function & EXCEPTION_FLAG:
        raise ModbusError(f"function byte {function:#04x} is not a request", data=adu)
    try:
        try:
            code = FunctionCode(function)
        except ValueError:
            raise IllegalRequestError(
                f"function {function:#04x} is not supported",
                unit=unit,
                function=function,
                code=ExceptionCode.ILLEGAL_FUNCTION,
                data=adu,
            ) from None
        if code in READ_FUNCTIONS:
            _length(adu, 8, "a read request")
            address, count = struct.unpack(">HH", adu[2:6])
            return ReadRequest(unit, _read_function(code), address, count)
        if code is FunctionCode.WRITE_SINGLE_REGISTER:
            _length(adu, 8, "a write-single request")
            address, value = struct.unpack(">HH", adu[2:6])
            return WriteSingleRequest(unit, address, value)
        # FC10: the byte count sits at offset 6 and must agree with the register count.
        if len(adu) < 9:
            raise ModbusError("a write-multiple request is at least 9 bytes", data=adu)
        address, count, byte_count = struct.unpack(">HHB", adu[2:7])
        _length(adu, 9 + byte_count, "this write-multiple request")
        if byte_count != 2 * count:
            raise IllegalRequestError(
                f"byte count {byte_count} does not match {count} registers",
                unit=unit,
                function=function,
                code=ExceptionCode.ILLEGAL_DATA_VALUE,
                data=adu,
            )
        return WriteMultipleRequest(unit, address, _words(adu[7:-2]))
    except IllegalRequestError as exc:
        exc.data = adu[:64]  # the frame constructors raise without the bytes; attach them
        raise


def decode_reply(adu: bytes) -> Reply:
    """Decode one whole reply ADU (an RTU reply is self-describing once its end is known).

    Raises `ModbusCrcError` for a bad CRC and `ModbusError` for anything else that is wrong.
    """
    adu = bytes(adu)
    _checked(adu, 5)
    unit, function = adu[0], adu[1]
    if function & EXCEPTION_FLAG:
        _length(adu, 5, "an exception reply")
        return ExceptionReply(unit, function & ~EXCEPTION_FLAG, adu[2])
    if function in READ_FUNCTIONS:
        byte_count = adu[2]
        _length(adu, 5 + byte_count, "this read reply")
        if byte_count % 2:
            raise ModbusError(f"odd byte count {byte_count} in a read reply", data=adu)
        return ReadReply(unit, _read_function(function), _words(adu[3:-2]))
    if function == FunctionCode.WRITE_SINGLE_REGISTER:
        _length(adu, 8, "a write-single reply")
        address, value = struct.unpack(">HH", adu[2:6])
        return WriteSingleReply(unit, address, value)
    if function == FunctionCode.WRITE_MULTIPLE_REGISTERS:
        _length(adu, 8, "a write-multiple reply")
        address, count = struct.unpack(">HH", adu[2:6])
        return WriteMultipleReply(unit, address, count)
    raise ModbusError(f"function {function:#04x} has no typed reply here", data=adu)
