"""Value formats: how a data identifier's bytes become a `Decimal`, a date, a word, and back.

Every value travels low byte first. Numbers are packed BCD; for signed items (current, power, power
factor, combined energy) the top bit of the most significant byte — the last byte on the wire — is
the sign, so a signed 3-byte ``XXX.XXX`` reaches ±799.999. Numbers are `Decimal`, never `float`: a
meter's 1234.56 kWh must not come back as 1234.5599999.

Each format is a frozen dataclass with ``decode(bytes) -> value`` (raising `Dlt645Error` on bytes
that do not fit, whatever they are) and ``encode(value) -> bytes`` (raising `Dlt645Error` on a value
the format cannot carry exactly: an encoder never rounds; the caller quantizes first).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

from devices.dlt645.errors import Dlt645Error, Reason

__all__ = [
    "Block",
    "Date",
    "Digits",
    "Format",
    "MeterType",
    "Number",
    "Stamp",
    "Status3",
    "StatusWord3",
    "Time",
    "Value",
    "Word",
    "bcd_digits",
    "digits_bcd",
]


def bcd_digits(data: bytes) -> str:
    """The decimal digits of `data` read as a BCD number sent low byte first."""
    text = bytes(reversed(data)).hex()
    if text and not text.isdigit():
        raise Dlt645Error(Reason.BAD_BCD, "a nibble above 9", data=data)
    return text


def digits_bcd(digits: str) -> bytes:
    """The wire bytes (low byte first) of an even-length string of decimal digits."""
    if len(digits) % 2 or (digits and not (digits.isascii() and digits.isdigit())):
        raise Dlt645Error(Reason.BAD_VALUE, f"{digits!r} is not an even count of digits")
    return bytes(reversed(bytes.fromhex(digits)))


def _expect_width(data: bytes, width: int) -> None:
    if len(data) != width:
        raise Dlt645Error(
            Reason.BAD_LENGTH, f"{len(data)} bytes, the format has {width}", data=data
        )


@dataclass(frozen=True, slots=True)
class Number:
    """A BCD number of `width` bytes with `decimals` places, optionally signed (``XXX.XXX``)."""

    width: int
    decimals: int
    signed: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.width <= 8 or not 0 <= self.decimals <= 2 * self.width:
            raise ValueError(f"unusable number format {self!r}")

    @property
    def label(self) -> str:
        """The standard's picture of the format: ``XXXXXX.XX``."""
        whole = 2 * self.width - self.decimals
        return "X" * whole + ("." + "X" * self.decimals if self.decimals else "")

    @property
    def limit(self) -> Decimal:
        """The largest magnitude the format carries."""
        digits = 2 * self.width
        top = (8 * 10 ** (digits - 1) - 1) if self.signed else (10**digits - 1)
        return Decimal(top).scaleb(-self.decimals)

    def decode(self, data: bytes) -> Decimal:
        """The value of `data`; a signed zero comes back as plain zero."""
        _expect_width(data, self.width)
        negative = self.signed and bool(data[-1] & 0x80)
        if negative:
            data = data[:-1] + bytes([data[-1] & 0x7F])
        magnitude = int(bcd_digits(data))
        return Decimal(-magnitude if negative else magnitude).scaleb(-self.decimals)

    def encode(self, value: Any) -> bytes:
        """The wire bytes of `value` (a `Decimal` or `int`), which must fit exactly."""
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not a Decimal")
        value = Decimal(value)
        if not value.is_finite():
            raise Dlt645Error(Reason.OUT_OF_RANGE, f"{value} is not finite")
        scaled = value.scaleb(self.decimals)
        if scaled != scaled.to_integral_value():
            raise Dlt645Error(Reason.OUT_OF_RANGE, f"{value} has more than {self.decimals} places")
        if value < 0 and not self.signed:
            raise Dlt645Error(Reason.OUT_OF_RANGE, f"{value} is negative; {self.label} is not")
        if abs(value) > self.limit:
            raise Dlt645Error(Reason.OUT_OF_RANGE, f"{value} exceeds {self.label}")
        magnitude = abs(int(scaled))
        wire = bytearray(digits_bcd(str(magnitude).zfill(2 * self.width)))
        if value < 0:
            wire[-1] |= 0x80
        return bytes(wire)


@dataclass(frozen=True, slots=True)
class Block:
    """Several numbers of one format back to back (a ``FF`` block read), 1 to `count` of them."""

    item: Number
    count: int

    @property
    def label(self) -> str:
        """``XXXXXX.XX ×1..5``."""
        return f"{self.item.label} ×1..{self.count}"

    def decode(self, data: bytes) -> tuple[Decimal, ...]:
        """The numbers in `data`, in wire order (total first, then tariffs or phases)."""
        size = self.item.width
        if not data or len(data) % size or len(data) // size > self.count:
            raise Dlt645Error(Reason.BAD_LENGTH, f"{len(data)} bytes for {self.label}", data=data)
        return tuple(self.item.decode(data[i : i + size]) for i in range(0, len(data), size))

    def encode(self, value: Any) -> bytes:
        """The wire bytes of a tuple of 1 to `count` numbers."""
        if not isinstance(value, tuple) or not 1 <= len(value) <= self.count:
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not 1-{self.count} numbers")
        return b"".join(self.item.encode(v) for v in value)


def _bcd_fields(data: bytes) -> list[int]:
    """The BCD bytes of `data` as numbers 0-99, in wire order."""
    digits = bcd_digits(data)
    return [int(digits[i : i + 2]) for i in range(len(digits) - 2, -2, -2)]


@dataclass(frozen=True, slots=True)
class Date:
    """``YYMMDDWW``: a date and its weekday (0 = Sunday), 4 bytes, WW sent first.

    The weekday is derived data: it is written from the date and not checked when read, because
    masters (the `dlt645` package among them) are known to send whatever weekday they like.
    """

    @property
    def label(self) -> str:
        """The standard's picture of the format."""
        return "YYMMDDWW"

    def decode(self, data: bytes) -> dt.date:
        """The date in `data`."""
        _expect_width(data, 4)
        weekday, day, month, year = _bcd_fields(data)
        if weekday > 6:
            raise Dlt645Error(Reason.BAD_DATE, f"weekday {weekday}", data=data)
        try:
            return dt.date(2000 + year, month, day)
        except ValueError as exc:
            raise Dlt645Error(Reason.BAD_DATE, str(exc), data=data) from exc

    def encode(self, value: Any) -> bytes:
        """The wire bytes of a `datetime.date` in 2000-2099."""
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not a date")
        if not 2000 <= value.year <= 2099:
            raise Dlt645Error(Reason.BAD_DATE, f"{value} is outside 2000-2099")
        weekday = value.isoweekday() % 7
        return digits_bcd(f"{value.year % 100:02}{value.month:02}{value.day:02}{weekday:02}")


@dataclass(frozen=True, slots=True)
class Time:
    """``hhmmss``: a time of day, 3 bytes, seconds first."""

    @property
    def label(self) -> str:
        """The standard's picture of the format."""
        return "hhmmss"

    def decode(self, data: bytes) -> dt.time:
        """The time in `data`."""
        _expect_width(data, 3)
        second, minute, hour = _bcd_fields(data)
        try:
            return dt.time(hour, minute, second)
        except ValueError as exc:
            raise Dlt645Error(Reason.BAD_DATE, str(exc), data=data) from exc

    def encode(self, value: Any) -> bytes:
        """The wire bytes of a whole-second `datetime.time`."""
        if not isinstance(value, dt.time) or value.microsecond or value.tzinfo is not None:
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not a whole-second naive time")
        return digits_bcd(f"{value.hour:02}{value.minute:02}{value.second:02}")


@dataclass(frozen=True, slots=True)
class Stamp:
    """``YYMMDDhhmmss``: a date and time to the second, 6 bytes, seconds first on the wire.

    The time sync (08H) and the relay control deadline (1CH) carry it: ``ss mm hh DD MM YY``.
    """

    @property
    def label(self) -> str:
        """The standard's picture of the format."""
        return "YYMMDDhhmmss"

    def decode(self, data: bytes) -> dt.datetime:
        """The naive local date and time in `data`."""
        _expect_width(data, 6)
        second, minute, hour, day, month, year = _bcd_fields(data)
        try:
            return dt.datetime(2000 + year, month, day, hour, minute, second)
        except ValueError as exc:
            raise Dlt645Error(Reason.BAD_DATE, str(exc), data=data) from exc

    def encode(self, value: Any) -> bytes:
        """The wire bytes of a naive whole-second `datetime.datetime` in 2000-2099."""
        if not isinstance(value, dt.datetime) or value.tzinfo is not None or value.microsecond:
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not a whole-second naive datetime")
        if not 2000 <= value.year <= 2099:
            raise Dlt645Error(Reason.BAD_DATE, f"{value} is outside 2000-2099")
        return digits_bcd(value.strftime("%y%m%d%H%M%S"))


@dataclass(frozen=True, slots=True)
class Digits:
    """``2 × width`` decimal digits, low byte first (a meter number: ``NNNNNNNNNNNN``)."""

    width: int

    @property
    def label(self) -> str:
        """The standard's picture of the format."""
        return "N" * 2 * self.width

    def decode(self, data: bytes) -> str:
        """The digits in `data`, most significant first."""
        _expect_width(data, self.width)
        return bcd_digits(data)

    def encode(self, value: Any) -> bytes:
        """The wire bytes of a string of ``2 × width`` digits."""
        if not isinstance(value, str) or len(value) != 2 * self.width:
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not {2 * self.width} digits")
        return digits_bcd(value)


@dataclass(frozen=True, slots=True)
class Word:
    """A binary bit field of `width` bytes, low byte first (the run status words 1-7)."""

    width: int = 2

    @property
    def label(self) -> str:
        """The picture of a bit field."""
        return f"bits ×{8 * self.width}"

    def decode(self, data: bytes) -> int:
        """The word's bits."""
        _expect_width(data, self.width)
        return int.from_bytes(data, "little")

    def encode(self, value: Any) -> bytes:
        """The wire bytes of an `int` that fits the word."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not an int")
        if not 0 <= value < 1 << (8 * self.width):
            raise Dlt645Error(Reason.OUT_OF_RANGE, f"{value} does not fit {self.width} bytes")
        return value.to_bytes(self.width, "little")


class MeterType(enum.IntEnum):
    """Bits 8-9 of run status word 3: what kind of prepayment the meter does."""

    NON_PREPAID = 0b00
    ENERGY_PREPAID = 0b01
    MONEY_PREPAID = 0b10
    RESERVED = 0b11


@dataclass(frozen=True, slots=True)
class StatusWord3:
    """Run status word 3 (04000503), with the bits the relay and prepayment logic use named.

    bit4 relay state (1 = open, power off); bit6 relay command state (1 = a trip is in force);
    bit7 pre-trip alarm; bits 8-9 meter type; bit12 keep-power (保电) state. The other bits (supply
    mode, programming enable, time zone, tariff, ladder, authentication) are carried untouched.
    """

    bits: int

    RELAY_OPEN = 1 << 4
    RELAY_COMMAND_OPEN = 1 << 6
    PRE_TRIP_ALARM = 1 << 7
    KEEP_POWER = 1 << 12

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise Dlt645Error(Reason.BAD_VALUE, f"{self.bits!r} is not an int")
        if not 0 <= self.bits <= 0xFFFF:
            raise Dlt645Error(Reason.OUT_OF_RANGE, f"{self.bits} does not fit 16 bits")

    @classmethod
    def of(
        cls,
        *,
        relay_open: bool = False,
        relay_command_open: bool = False,
        pre_trip_alarm: bool = False,
        meter_type: MeterType = MeterType.NON_PREPAID,
        keep_power: bool = False,
    ) -> StatusWord3:
        """The word with these named bits (and every other bit clear)."""
        bits = (
            (cls.RELAY_OPEN if relay_open else 0)
            | (cls.RELAY_COMMAND_OPEN if relay_command_open else 0)
            | (cls.PRE_TRIP_ALARM if pre_trip_alarm else 0)
            | (cls.KEEP_POWER if keep_power else 0)
            | int(meter_type) << 8
        )
        return cls(bits)

    @property
    def relay_open(self) -> bool:
        """The relay is open: the premises have no power."""
        return bool(self.bits & self.RELAY_OPEN)

    @property
    def relay_command_open(self) -> bool:
        """The last relay command in force is a trip."""
        return bool(self.bits & self.RELAY_COMMAND_OPEN)

    @property
    def pre_trip_alarm(self) -> bool:
        """The meter warns that it is about to trip (credit nearly exhausted)."""
        return bool(self.bits & self.PRE_TRIP_ALARM)

    @property
    def meter_type(self) -> MeterType:
        """Non-prepaid, energy-prepaid or money-prepaid."""
        return MeterType((self.bits >> 8) & 0b11)

    @property
    def keep_power(self) -> bool:
        """Keep-power (保电) is on: the meter refuses to trip."""
        return bool(self.bits & self.KEEP_POWER)


@dataclass(frozen=True, slots=True)
class Status3:
    """The format of run status word 3: a 2-byte word decoded into a `StatusWord3`."""

    @property
    def label(self) -> str:
        """The picture of a bit field."""
        return "bits ×16"

    def decode(self, data: bytes) -> StatusWord3:
        """The status word in `data`."""
        _expect_width(data, 2)
        return StatusWord3(int.from_bytes(data, "little"))

    def encode(self, value: Any) -> bytes:
        """The wire bytes of a `StatusWord3`."""
        if not isinstance(value, StatusWord3):
            raise Dlt645Error(Reason.BAD_VALUE, f"{value!r} is not a StatusWord3")
        return value.bits.to_bytes(2, "little")


Format: TypeAlias = Number | Block | Date | Time | Stamp | Digits | Word | Status3
"""Every value format a data identifier can have."""

Value: TypeAlias = (
    Decimal | tuple[Decimal, ...] | dt.datetime | dt.date | dt.time | str | int | StatusWord3
)
"""Every value a data identifier can hold, by format: Number → Decimal, Block → tuple, ..."""
