"""Typed frames to bytes and back: ``encode(frame) -> bytes`` and ``decode(bytes) -> Frame``.

The mapping between a frame's meaning and its envelope lives here, one function per direction,
branching on the control byte (which is also how 1997 and 2007 frames are told apart: 01H/02H/04H
versus 11H/12H/14H). `decode` takes exactly one frame; a stream with noise and partial frames goes
through `decoder.Decoder` instead.
"""

from __future__ import annotations

from collections.abc import Callable

from devices.dlt645.address import Address
from devices.dlt645.control import ABNORMAL, FOLLOWS, REPLY, Function, function_of
from devices.dlt645.envelope import Envelope, pack, unpack
from devices.dlt645.errors import Dlt645Error, Reason
from devices.dlt645.frames import (
    ErrorFlags,
    ErrorReply,
    FollowUpReply,
    Frame,
    RawFrame,
    ReadAddressReply,
    ReadAddressRequest,
    ReadFollowUp,
    ReadReply,
    ReadRequest,
    RelayAction,
    RelayControl,
    RelayReply,
    TimeSync,
    WriteReply,
    WriteRequest,
)
from devices.dlt645.identifiers import Standard
from devices.dlt645.values import Stamp

__all__ = ["control_of", "decode", "encode", "from_envelope", "to_envelope"]

_STAMP = Stamp()
_RELAY_N2 = 0x00
_RELAY_ORDERS = frozenset(action.value for action in RelayAction)
_READ = {Standard.V2007: Function.READ, Standard.V1997: Function.READ_1997}
_FOLLOW_UP = {Standard.V2007: Function.FOLLOW_UP, Standard.V1997: Function.FOLLOW_UP_1997}
_WRITE = {Standard.V2007: Function.WRITE, Standard.V1997: Function.WRITE_1997}


def encode(frame: Frame, *, preamble: int = 0) -> bytes:
    """The wire bytes of `frame`, after `preamble` ``FE`` bytes (masters send 4 on real lines)."""
    return pack(to_envelope(frame), preamble=preamble)


def decode(data: bytes) -> Frame:
    """The one frame in `data` (0-4 ``FE`` before it); anything else raises `Dlt645Error`."""
    return from_envelope(unpack(data))


def control_of(frame: Frame) -> int:
    """The control byte `frame` travels with."""
    return to_envelope(frame).control


def _di_bytes(di: int, standard: Standard) -> bytes:
    return di.to_bytes(standard.di_size, "little")


def _code(text: str) -> bytes:
    return bytes.fromhex(text)


def to_envelope(frame: Frame) -> Envelope:
    """The address, control byte and plain data of `frame`."""
    match frame:
        case ReadRequest(address, di, standard, extra):
            return Envelope(address, _READ[standard], _di_bytes(di, standard) + extra)
        case ReadReply(address, di, data, standard, follows):
            control = _READ[standard] | REPLY | (FOLLOWS if follows else 0)
            return Envelope(address, control, _di_bytes(di, standard) + data)
        case ReadFollowUp(address, di, seq, standard):
            tail = bytes([seq]) if standard is Standard.V2007 else b""
            return Envelope(address, _FOLLOW_UP[standard], _di_bytes(di, standard) + tail)
        case FollowUpReply(address, di, data, seq, standard, follows):
            control = _FOLLOW_UP[standard] | REPLY | (FOLLOWS if follows else 0)
            tail = bytes([seq]) if standard is Standard.V2007 else b""
            return Envelope(address, control, _di_bytes(di, standard) + data + tail)
        case ReadAddressRequest(address):
            return Envelope(address, Function.READ_ADDRESS, b"")
        case ReadAddressReply(address):
            return Envelope(address, Function.READ_ADDRESS | REPLY, address.wire)
        case WriteRequest(address, di, data, password, operator, standard):
            codes = _code(password) + (_code(operator) if standard is Standard.V2007 else b"")
            return Envelope(address, _WRITE[standard], _di_bytes(di, standard) + codes + data)
        case WriteReply(address, standard):
            return Envelope(address, _WRITE[standard] | REPLY, b"")
        case TimeSync(when, address):
            return Envelope(address, Function.TIME_SYNC, _STAMP.encode(when))
        case RelayControl(address, action, deadline, password, operator):
            order = bytes([action, _RELAY_N2]) + _STAMP.encode(deadline)
            return Envelope(address, Function.RELAY, _code(password) + _code(operator) + order)
        case RelayReply(address):
            return Envelope(address, Function.RELAY | REPLY, b"")
        case ErrorReply(address, function, errors):
            return Envelope(address, function | REPLY | ABNORMAL, bytes([errors]))
        case RawFrame(address, control, data):
            return Envelope(address, control, data)
    raise Dlt645Error(Reason.BAD_VALUE, f"{frame!r} is not a DL/T 645 frame")


# --- decoding: one parser per control byte ------------------------------------------------------

_Parser = Callable[[Envelope], Frame]


def _length(envelope: Envelope, *allowed: int, minimum: int | None = None) -> None:
    size = len(envelope.data)
    if size in allowed or (minimum is not None and size >= minimum):
        return
    wanted = " or ".join(map(str, allowed)) if allowed else f"{minimum} or more"
    raise Dlt645Error(
        Reason.BAD_LENGTH,
        f"control {envelope.control:02X}H with L = {size}, not {wanted}",
        data=envelope.data,
    )


def _di(envelope: Envelope, standard: Standard) -> int:
    return int.from_bytes(envelope.data[: standard.di_size], "little")


def _read_request(standard: Standard) -> _Parser:
    def parse(envelope: Envelope) -> Frame:
        if standard is Standard.V2007:
            _length(envelope, 4, 5, 10)
        else:
            _length(envelope, 2)
        size = standard.di_size
        return ReadRequest(
            envelope.address, _di(envelope, standard), standard, envelope.data[size:]
        )

    return parse


def _read_reply(standard: Standard, *, follows: bool) -> _Parser:
    def parse(envelope: Envelope) -> Frame:
        size = standard.di_size
        _length(envelope, minimum=size)
        di = _di(envelope, standard)
        return ReadReply(envelope.address, di, envelope.data[size:], standard, follows)

    return parse


def _follow_up(standard: Standard) -> _Parser:
    def parse(envelope: Envelope) -> Frame:
        if standard is Standard.V2007:
            _length(envelope, 5)
            return ReadFollowUp(
                envelope.address, _di(envelope, standard), envelope.data[4], standard
            )
        _length(envelope, 2)
        return ReadFollowUp(envelope.address, _di(envelope, standard), 0, standard)

    return parse


def _follow_up_reply(standard: Standard, *, follows: bool) -> _Parser:
    def parse(envelope: Envelope) -> Frame:
        data, di = envelope.data, _di(envelope, standard)
        if standard is Standard.V2007:
            _length(envelope, minimum=5)
            return FollowUpReply(envelope.address, di, data[4:-1], data[-1], standard, follows)
        _length(envelope, minimum=2)
        return FollowUpReply(envelope.address, di, data[2:], 0, standard, follows)

    return parse


def _write_request(standard: Standard) -> _Parser:
    def parse(envelope: Envelope) -> Frame:
        data, size = envelope.data, standard.di_size
        password = data[size : size + 4].hex().upper()
        if standard is Standard.V2007:
            _length(envelope, minimum=12)
            operator = data[8:12].hex().upper()
            di = _di(envelope, standard)
            return WriteRequest(envelope.address, di, data[12:], password, operator, standard)
        _length(envelope, minimum=6)
        return WriteRequest(
            envelope.address, _di(envelope, standard), data[6:], password, standard=standard
        )

    return parse


def _write_reply(standard: Standard) -> _Parser:
    def parse(envelope: Envelope) -> Frame:
        _length(envelope, 0)
        return WriteReply(envelope.address, standard)

    return parse


def _read_address(envelope: Envelope) -> Frame:
    _length(envelope, 0)
    return ReadAddressRequest(envelope.address)


def _read_address_reply(envelope: Envelope) -> Frame:
    _length(envelope, 6)
    if Address.from_wire(envelope.data) != envelope.address:
        raise Dlt645Error(
            Reason.BAD_FIELD, "the address in the data is not the frame's", data=envelope.data
        )
    return ReadAddressReply(envelope.address)


def _time_sync(envelope: Envelope) -> Frame:
    _length(envelope, 6)
    return TimeSync(_STAMP.decode(envelope.data), envelope.address)


def _relay(envelope: Envelope) -> Frame:
    _length(envelope, 16)
    data = envelope.data
    if data[8] not in _RELAY_ORDERS or data[9] != _RELAY_N2:
        raise Dlt645Error(
            Reason.BAD_FIELD, f"N1 N2 = {data[8]:02X} {data[9]:02X} is no relay order", data=data
        )
    return RelayControl(
        envelope.address,
        RelayAction(data[8]),
        _STAMP.decode(data[10:16]),
        data[0:4].hex().upper(),
        data[4:8].hex().upper(),
    )


def _relay_reply(envelope: Envelope) -> Frame:
    _length(envelope, 0)
    return RelayReply(envelope.address)


def _error_reply(envelope: Envelope) -> Frame:
    _length(envelope, 1)
    return ErrorReply(envelope.address, function_of(envelope.control), ErrorFlags(envelope.data[0]))


def _parsers() -> dict[int, _Parser]:
    table: dict[int, _Parser] = {
        Function.TIME_SYNC: _time_sync,
        Function.READ_ADDRESS: _read_address,
        Function.READ_ADDRESS | REPLY: _read_address_reply,
        Function.RELAY: _relay,
        Function.RELAY | REPLY: _relay_reply,
    }
    for standard in Standard:
        read, follow_up, write = _READ[standard], _FOLLOW_UP[standard], _WRITE[standard]
        table[read] = _read_request(standard)
        table[read | REPLY] = _read_reply(standard, follows=False)
        table[read | REPLY | FOLLOWS] = _read_reply(standard, follows=True)
        table[follow_up] = _follow_up(standard)
        table[follow_up | REPLY] = _follow_up_reply(standard, follows=False)
        table[follow_up | REPLY | FOLLOWS] = _follow_up_reply(standard, follows=True)
        table[write] = _write_request(standard)
        table[write | REPLY] = _write_reply(standard)
    for function in range(0x20):
        table[function | REPLY | ABNORMAL] = _error_reply
    return table


_PARSERS = _parsers()


def from_envelope(envelope: Envelope) -> Frame:
    """The typed frame `envelope` carries; raises `Dlt645Error` if its data does not fit."""
    parser = _PARSERS.get(envelope.control)
    if parser is None:
        return RawFrame(envelope.address, envelope.control, envelope.data)
    return parser(envelope)
