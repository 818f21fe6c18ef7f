"""Typed DL/T 645 frames: one frozen dataclass per request and reply the codec understands.

Each frame validates itself when built, so an invalid one cannot exist — whether it came off the
wire through `decode` or was built by a master or the meter model. The envelope details (control
byte, length, +33H, checksum) are the codec's business; here a frame is what it means: a read of
identifier 00010000 from meter 001500076004, a reply carrying its bytes, a relay trip valid until a
deadline.

DL/T 645-1997 frames share these classes with ``standard=Standard.V1997``: their identifiers are two
bytes, and the fields 1997 does not carry (the 2007 operator code, the follow-up sequence number,
the load-curve extra) must keep their neutral defaults. Functions this package does not model (the
freeze, baud-rate, password, clearing and security commands) still decode, as `RawFrame`.
"""

from __future__ import annotations

import datetime as dt
import enum
import string
from dataclasses import dataclass
from typing import Any, TypeAlias

from devices.dlt645.address import BROADCAST, WILDCARD, Address
from devices.dlt645.control import is_modelled_control
from devices.dlt645.envelope import MAX_DATA
from devices.dlt645.errors import Dlt645Error, Reason
from devices.dlt645.identifiers import Standard, decode_value, encode_value
from devices.dlt645.values import Value

__all__ = [
    "NO_OPERATOR",
    "ErrorFlags",
    "ErrorReply",
    "FollowUpReply",
    "Frame",
    "RawFrame",
    "ReadAddressReply",
    "ReadAddressRequest",
    "ReadFollowUp",
    "ReadReply",
    "ReadRequest",
    "RelayAction",
    "RelayControl",
    "RelayReply",
    "TimeSync",
    "WriteReply",
    "WriteRequest",
]

NO_OPERATOR = "00000000"
"""The operator code (C0-C3) masters send when they have none; 1997 frames carry none at all."""


class ErrorFlags(enum.IntFlag):
    """The ERR byte of an abnormal reply, one flag per bit (bit 7 is reserved)."""

    OTHER = 0x01
    """bit0: any other error (also: a command the meter does not support)."""
    NO_DATA = 0x02
    """bit1: no requested data (an unknown identifier)."""
    UNAUTHORISED = 0x04
    """bit2: wrong password, or not authorised."""
    BAUD_RATE = 0x08
    """bit3: the baud rate cannot be changed."""
    YEAR_ZONES = 0x10
    """bit4: too many year time zones."""
    DAY_SLOTS = 0x20
    """bit5: too many daily time slots."""
    TARIFFS = 0x40
    """bit6: too many tariffs."""


class RelayAction(enum.IntEnum):
    """N1 of a relay control (1CH) command."""

    TRIP = 0x1A
    """拉闸: open the relay."""
    ALLOW_CLOSE = 0x1B
    """合闸允许: the customer may close the relay (by the meter's button)."""
    CLOSE = 0x1C
    """直接合闸: close the relay now."""
    ALARM = 0x2A
    """报警: raise the alarm."""
    ALARM_OFF = 0x2B
    """报警解除: clear the alarm."""
    KEEP_POWER = 0x3A
    """保电: never trip (protected customers) until cancelled."""
    CANCEL_KEEP_POWER = 0x3B
    """保电解除: cancel keep-power."""


def _fail(detail: str) -> Dlt645Error:
    return Dlt645Error(Reason.BAD_FIELD, detail)


def _check_address(address: Any) -> None:
    if not isinstance(address, Address):
        raise _fail(f"{address!r} is not an Address")


def _check_standard(standard: Any) -> None:
    if not isinstance(standard, Standard):
        raise _fail(f"{standard!r} is not a Standard")


def _check_di(di: Any, standard: Standard) -> None:
    _check_standard(standard)
    if isinstance(di, bool) or not isinstance(di, int) or not 0 <= di < 1 << (8 * standard.di_size):
        raise _fail(f"{di!r} is not a {standard.di_size}-byte identifier ({standard.value})")


def _check_bytes(name: str, value: Any, limit: int) -> None:
    if not isinstance(value, bytes):
        raise _fail(f"{name} {value!r} is not bytes")
    if len(value) > limit:
        raise Dlt645Error(Reason.TOO_LONG, f"{name} is {len(value)} bytes, at most {limit} fit")


def _check_code(name: str, value: Any) -> None:
    """A password or operator code: 4 bytes written as 8 hex digits in wire order."""
    if not (isinstance(value, str) and len(value) == 8 and set(value) <= set(string.hexdigits)):
        raise _fail(f"{name} {value!r} is not 8 hex digits")
    if value != value.upper():
        raise _fail(f"{name} {value!r} must be upper case")


def _check_stamp(name: str, value: Any) -> None:
    """A timestamp the 6-byte BCD ``ss mm hh DD MM YY`` field can carry exactly."""
    if not isinstance(value, dt.datetime) or value.tzinfo is not None:
        raise _fail(f"{name} {value!r} is not a naive datetime")
    if value.microsecond or not 2000 <= value.year <= 2099:
        raise Dlt645Error(Reason.BAD_DATE, f"{name} {value} is not a whole second in 2000-2099")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(f"{name} {value!r} is not a bool")


def _check_seq(seq: Any, standard: Standard) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 0xFF:
        raise _fail(f"sequence {seq!r} is not a byte")
    if standard is Standard.V1997 and seq != 0:
        raise _fail("DL/T 645-1997 follow-ups carry no sequence number")


def _di_room(standard: Standard) -> int:
    return MAX_DATA - standard.di_size


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read one identifier (11H; 01H in 1997).

    `extra` is what a 2007 load-curve read appends after the DI: the block count N (1 byte), or N
    and a start time ``mm hh DD MM YY`` (6 bytes). Plain reads leave it empty.
    """

    address: Address
    di: int
    standard: Standard = Standard.V2007
    extra: bytes = b""

    def __post_init__(self) -> None:
        _check_address(self.address)
        _check_di(self.di, self.standard)
        _check_bytes("extra", self.extra, 6)
        if len(self.extra) not in (0, 1, 6):
            raise Dlt645Error(Reason.BAD_LENGTH, f"extra of {len(self.extra)} bytes, not 0, 1, 6")
        if self.extra and self.standard is Standard.V1997:
            raise _fail("DL/T 645-1997 reads carry no extra")


@dataclass(frozen=True, slots=True)
class ReadReply:
    """A meter's answer to a read (91H, or B1H when follow-up frames exist; 81H/A1H in 1997).

    `data` is the value's bytes as the meter sent them (the DI already split off); `value` decodes
    them by the identifier table, `of` builds a reply from a value.
    """

    address: Address
    di: int
    data: bytes
    standard: Standard = Standard.V2007
    follows: bool = False

    def __post_init__(self) -> None:
        _check_address(self.address)
        _check_di(self.di, self.standard)
        _check_bytes("data", self.data, _di_room(self.standard))
        _check_flag("follows", self.follows)

    @classmethod
    def of(
        cls,
        address: Address,
        di: int,
        value: Any,
        *,
        standard: Standard = Standard.V2007,
        follows: bool = False,
    ) -> ReadReply:
        """The reply carrying `value`, encoded by the identifier table's format for `di`."""
        return cls(address, di, encode_value(di, value, standard), standard, follows)

    @property
    def value(self) -> Value:
        """`data` decoded by the table; raises `Dlt645Error` for an unknown DI or bad bytes."""
        return decode_value(self.di, self.data, self.standard)


@dataclass(frozen=True, slots=True)
class ReadFollowUp:
    """Ask for the next part of a long reply (12H with sequence number `seq`; 02H in 1997)."""

    address: Address
    di: int
    seq: int = 0
    standard: Standard = Standard.V2007

    def __post_init__(self) -> None:
        _check_address(self.address)
        _check_di(self.di, self.standard)
        _check_seq(self.seq, self.standard)


@dataclass(frozen=True, slots=True)
class FollowUpReply:
    """One further part of a long reply (92H, B2H if more follow; 82H/A2H in 1997)."""

    address: Address
    di: int
    data: bytes
    seq: int = 0
    standard: Standard = Standard.V2007
    follows: bool = False

    def __post_init__(self) -> None:
        _check_address(self.address)
        _check_di(self.di, self.standard)
        _check_seq(self.seq, self.standard)
        room = _di_room(self.standard) - (1 if self.standard is Standard.V2007 else 0)
        _check_bytes("data", self.data, room)
        _check_flag("follows", self.follows)


@dataclass(frozen=True, slots=True)
class ReadAddressRequest:
    """Ask the meter on the line for its address (13H, normally to the wildcard address)."""

    address: Address = WILDCARD

    def __post_init__(self) -> None:
        _check_address(self.address)


@dataclass(frozen=True, slots=True)
class ReadAddressReply:
    """A meter's address (93H): it is both the frame's address and its data."""

    address: Address

    def __post_init__(self) -> None:
        _check_address(self.address)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Write one identifier (14H; 04H in 1997, which carries no operator code).

    `password` is ``PA P0 P1 P2`` as 8 hex digits in wire order (``"02123456"``: level 02, code
    123456); `operator` is ``C0..C3`` likewise. `data` is the value's bytes; `of` encodes a value.
    """

    address: Address
    di: int
    data: bytes
    password: str
    operator: str = NO_OPERATOR
    standard: Standard = Standard.V2007

    def __post_init__(self) -> None:
        _check_address(self.address)
        _check_di(self.di, self.standard)
        _check_code("password", self.password)
        _check_code("operator", self.operator)
        if self.standard is Standard.V1997 and self.operator != NO_OPERATOR:
            raise _fail("DL/T 645-1997 writes carry no operator code")
        overhead = 8 if self.standard is Standard.V2007 else 4
        _check_bytes("data", self.data, _di_room(self.standard) - overhead)

    @classmethod
    def of(
        cls,
        address: Address,
        di: int,
        value: Any,
        *,
        password: str,
        operator: str = NO_OPERATOR,
        standard: Standard = Standard.V2007,
    ) -> WriteRequest:
        """The write carrying `value`, encoded by the identifier table's format for `di`."""
        return cls(address, di, encode_value(di, value, standard), password, operator, standard)

    @property
    def value(self) -> Value:
        """`data` decoded by the table; raises `Dlt645Error` for an unknown DI or bad bytes."""
        return decode_value(self.di, self.data, self.standard)


@dataclass(frozen=True, slots=True)
class WriteReply:
    """The meter accepted a write (94H; 84H in 1997)."""

    address: Address
    standard: Standard = Standard.V2007

    def __post_init__(self) -> None:
        _check_address(self.address)
        _check_standard(self.standard)


@dataclass(frozen=True, slots=True)
class TimeSync:
    """Broadcast time sync (08H): set every meter's clock; none replies.

    On the wire the time is ``ss mm hh DD MM YY``, seconds first — not the ``YY MM DD hh mm ss``
    the `dlt645` package sends.
    """

    when: dt.datetime
    address: Address = BROADCAST

    def __post_init__(self) -> None:
        _check_stamp("time", self.when)
        _check_address(self.address)


@dataclass(frozen=True, slots=True)
class RelayControl:
    """Relay control (1CH): trip, allow close, close, alarm, keep-power, valid until `deadline`.

    Plaintext form: ``PA P0 P1 P2  C0..C3  N1 N2  N3..N8`` with N1 the `action`, N2 = 00 and
    N3..N8 the deadline ``ss mm hh DD MM YY``. With the State Grid security level (PA = 98) N1..N8
    are ciphertext; such a frame does not decode (its N1 is not an action).
    """

    address: Address
    action: RelayAction
    deadline: dt.datetime
    password: str
    operator: str = NO_OPERATOR

    def __post_init__(self) -> None:
        _check_address(self.address)
        if not isinstance(self.action, RelayAction):
            raise _fail(f"{self.action!r} is not a RelayAction")
        _check_stamp("deadline", self.deadline)
        _check_code("password", self.password)
        _check_code("operator", self.operator)


@dataclass(frozen=True, slots=True)
class RelayReply:
    """The meter carried out a relay control (9CH)."""

    address: Address

    def __post_init__(self) -> None:
        _check_address(self.address)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An abnormal reply (control = function | C0H, one ERR byte): D1H for a read, DCH for 1CH.

    `function` is the request's function code D4..D0 (11H, 14H, 1CH; 01H for a 1997 read).
    """

    address: Address
    function: int
    errors: ErrorFlags

    def __post_init__(self) -> None:
        _check_address(self.address)
        if isinstance(self.function, bool) or not isinstance(self.function, int):
            raise _fail(f"function {self.function!r} is not an int")
        if not 0 <= self.function <= 0x1F:
            raise _fail(f"function {self.function:#x} is not a 5-bit code")
        if not isinstance(self.errors, ErrorFlags) or not 0 <= self.errors <= 0xFF:
            raise _fail(f"errors {self.errors!r} is not an ErrorFlags byte")


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A well-formed frame of a function this package does not model, kept as bytes.

    Freeze (16H), change baud rate (17H), change password (18H), the clearing commands (19H-1BH),
    security authentication (03H), write address (15H) and the 1997-only functions arrive as this,
    so a bus can log or relay them. The control codes of the modelled frames are refused here: a
    read must be a `ReadRequest`, so that every frame has exactly one typed form.
    """

    address: Address
    control: int
    data: bytes

    def __post_init__(self) -> None:
        _check_address(self.address)
        if isinstance(self.control, bool) or not isinstance(self.control, int):
            raise _fail(f"control {self.control!r} is not an int")
        if not 0 <= self.control <= 0xFF:
            raise _fail(f"control {self.control:#x} is not a byte")
        if is_modelled_control(self.control):
            raise _fail(f"control {self.control:02X}H has a typed frame")
        _check_bytes("data", self.data, MAX_DATA)


Frame: TypeAlias = (
    ReadRequest
    | ReadReply
    | ReadFollowUp
    | FollowUpReply
    | ReadAddressRequest
    | ReadAddressReply
    | WriteRequest
    | WriteReply
    | TimeSync
    | RelayControl
    | RelayReply
    | ErrorReply
    | RawFrame
)
"""Every frame the codec encodes and decodes."""
