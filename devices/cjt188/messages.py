"""What the data of a CJ/T 188 frame means: typed messages for reading and valve control.

Data starts with the data identifier (DI, two bytes) and a serial number (SER, one byte) that the
meter echoes. The typed messages:

    read current data   01H  DI 901F SER                                   (L = 03H)
      its reply         81H  DI 901F SER  current:4+1  settlement:4+1  time:7  ST:2  (L = 16H)
    read address        03H  DI 810A SER          reply 83H  DI 810A SER  (address in the header)
    valve control       04H  DI A017 SER 55H|99H  reply 84H  DI A017 SER ST:2
    error reply         C0H|function  SER ST:2

* Flows are 8 BCD digits, XXXXXX.XX, low byte first, followed by a unit byte (2CH m³, 29H L, …).
* Time is 7 BCD bytes ``ss mm hh DD MM YY(low) YY(high)``; all zeros means "no clock".
* ST bits D0–D1 are the valve (00 open, 01 closed, 11 abnormal) and D2 a low battery, in the
  first ST byte; the other bits are vendor-specific and kept as they came.
* The standard's example sends DI 901F as ``90 1F``; some vendors' meters want ``1F 90``. The
  order is a per-meter setting (`DiOrder`), applied to every DI both ways.

Other control codes and DIs (listed in `DataId`) are known by name; `from_frame` raises
`UnsupportedDataError` for them, so a meter can answer with an error reply. The 901F layout is
that of water and gas meters; heat meters (T = 20H/21H) use another and are refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import assert_never

from devices.cjt188.bcd import from_bcd, to_bcd
from devices.cjt188.errors import Cjt188Error, UnsupportedDataError
from devices.cjt188.frame import Frame, Function, MeterAddress, MeterType

__all__ = [
    "AddressReply",
    "CurrentData",
    "DataId",
    "DiOrder",
    "ErrorReply",
    "Message",
    "Quantity",
    "ReadAddress",
    "ReadCurrentData",
    "Status",
    "Unit",
    "ValveAction",
    "ValveControl",
    "ValveReply",
    "ValveState",
    "from_frame",
    "to_frame",
]


class DiOrder(enum.Enum):
    """Byte order of the data identifier on the wire (vendor-dependent)."""

    #: ``90 1F`` for DI 901F: the standard's own example.
    HIGH_FIRST = "high_first"
    #: ``1F 90``: what some vendors' meters expect.
    LOW_FIRST = "low_first"


class DataId(enum.IntEnum):
    """Data identifiers of CJ/T 188-2004 (only the first three have typed messages here)."""

    CURRENT_DATA = 0x901F
    ADDRESS = 0x810A
    VALVE_CONTROL = 0xA017
    HISTORY_1 = 0xD120  # … up to HISTORY_12 = D12BH, the last twelve settlement days
    HISTORY_12 = 0xD12B
    PRICE_TABLE = 0x8102
    SETTLEMENT_DAY = 0x8103
    READING_DAY = 0x8104
    PURCHASE_AMOUNT = 0x8105
    KEY_VERSION = 0x8106
    WRITE_PRICE_TABLE = 0xA010
    WRITE_SETTLEMENT_DAY = 0xA011
    WRITE_READING_DAY = 0xA012
    WRITE_PURCHASE_AMOUNT = 0xA013
    WRITE_KEY = 0xA014
    WRITE_TIME = 0xA015
    WRITE_SYNC_DATA = 0xA016
    WRITE_ADDRESS = 0xA018


class Unit(enum.IntEnum):
    """Unit codes of the standard's unit table."""

    J = 0x01
    WH = 0x02
    KWH = 0x05
    MWH = 0x08
    MWH_X100 = 0x0A
    KJ = 0x0B
    MJ = 0x0E
    GJ = 0x11
    GJ_X100 = 0x13
    W = 0x14
    KW = 0x17
    MW = 0x1A
    L = 0x29
    M3 = 0x2C
    L_PER_H = 0x32
    M3_PER_H = 0x35


class ValveState(enum.IntEnum):
    """ST bits D0–D1."""

    OPEN = 0b00
    CLOSED = 0b01
    RESERVED = 0b10
    ABNORMAL = 0b11


class ValveAction(enum.IntEnum):
    """The data byte of a valve-control (A017) request."""

    OPEN = 0x55
    CLOSE = 0x99


_VALVE_BITS, _BATTERY_BIT = 0x0003, 0x0004
_MAX_HUNDREDTHS = 10**8  # 8 BCD digits
_HUNDREDTH = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Status:
    """The two ST bytes as one number, first wire byte low."""

    raw: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.raw, int) or not 0 <= self.raw <= 0xFFFF:
            raise Cjt188Error(f"status {self.raw!r} is not two bytes")

    @classmethod
    def of(cls, valve: ValveState, *, battery_low: bool = False) -> Status:
        """A status with just the standard bits set."""
        return cls(valve | (_BATTERY_BIT if battery_low else 0))

    @property
    def valve(self) -> ValveState:
        """The valve state bits."""
        return ValveState(self.raw & _VALVE_BITS)

    @property
    def battery_low(self) -> bool:
        """The low-battery bit."""
        return bool(self.raw & _BATTERY_BIT)

    def to_wire(self) -> bytes:
        """The ST bytes."""
        return self.raw.to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class Quantity:
    """A cumulative flow: 0–999999.99 in `unit`, to the hundredth."""

    value: Decimal
    unit: Unit = Unit.M3

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "unit", Unit(self.unit))
            hundredths = Decimal(self.value) / _HUNDREDTH
        except (ValueError, ArithmeticError, TypeError) as exc:
            raise Cjt188Error(f"{self.value!r} {self.unit!r} is not a flow") from exc
        if hundredths != hundredths.to_integral_value() or not 0 <= hundredths < _MAX_HUNDREDTHS:
            raise Cjt188Error(f"flow {self.value} is not XXXXXX.XX")
        object.__setattr__(self, "value", Decimal(self.value))

    def to_wire(self) -> bytes:
        """Four BCD bytes and the unit byte."""
        return to_bcd(int(self.value / _HUNDREDTH), 4) + bytes([self.unit])

    @classmethod
    def from_wire(cls, data: bytes) -> Quantity:
        """The flow in five wire bytes."""
        try:
            unit = Unit(data[4])
        except ValueError:
            raise Cjt188Error(f"unit byte {data[4]:02X}H is unknown", data=data) from None
        return cls(Decimal(from_bcd(data[:4])) * _HUNDREDTH, unit)


def _check_ser(ser: int) -> None:
    if not isinstance(ser, int) or not 0 <= ser <= 0xFF:
        raise Cjt188Error(f"SER {ser!r} is not one byte")


def _time_to_wire(clock: datetime | None) -> bytes:
    if clock is None:
        return bytes(7)
    parts = (clock.second, clock.minute, clock.hour, clock.day, clock.month)
    return b"".join(to_bcd(p, 1) for p in parts) + to_bcd(clock.year, 2)


def _time_from_wire(data: bytes) -> datetime | None:
    if not any(data):
        return None
    second, minute, hour, day, month = (from_bcd(data[i : i + 1]) for i in range(5))
    try:
        return datetime(from_bcd(data[5:7]), month, day, hour, minute, second)
    except ValueError:
        raise Cjt188Error("the meter's time is not a date", data=data) from None


@dataclass(frozen=True, slots=True)
class ReadCurrentData:
    """Read data 901F: the meter's current readings."""

    ser: int = 0

    def __post_init__(self) -> None:
        _check_ser(self.ser)


@dataclass(frozen=True, slots=True)
class CurrentData:
    """The 901F reply of a water or gas meter."""

    ser: int
    current: Quantity
    settlement: Quantity
    clock: datetime | None
    status: Status

    def __post_init__(self) -> None:
        _check_ser(self.ser)
        if self.clock is not None and (self.clock.microsecond or self.clock.tzinfo is not None):
            raise Cjt188Error("the meter's time is whole seconds of naive local time")


@dataclass(frozen=True, slots=True)
class ReadAddress:
    """Read address 810A (send it to the wildcard address when one meter is on the line)."""

    ser: int = 0

    def __post_init__(self) -> None:
        _check_ser(self.ser)


@dataclass(frozen=True, slots=True)
class AddressReply:
    """The answer to `ReadAddress`: the address is the reply frame's own."""

    ser: int

    def __post_init__(self) -> None:
        _check_ser(self.ser)


@dataclass(frozen=True, slots=True)
class ValveControl:
    """Write data A017: open or close the valve."""

    ser: int
    action: ValveAction

    def __post_init__(self) -> None:
        _check_ser(self.ser)
        try:
            object.__setattr__(self, "action", ValveAction(self.action))
        except ValueError:
            raise Cjt188Error(f"valve action {self.action!r} is not 55H or 99H") from None


@dataclass(frozen=True, slots=True)
class ValveReply:
    """The meter's acknowledgement of `ValveControl`, with its status when it sends one."""

    ser: int
    status: Status | None = None

    def __post_init__(self) -> None:
        _check_ser(self.ser)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error reply (D6 set) to a request for ``function``: the echoed SER and the status."""

    function: Function
    ser: int
    status: Status = Status()

    def __post_init__(self) -> None:
        _check_ser(self.ser)
        try:
            object.__setattr__(self, "function", Function(self.function))
        except ValueError:
            raise Cjt188Error(f"function {self.function!r} is unknown") from None


Message = (
    ReadCurrentData
    | CurrentData
    | ReadAddress
    | AddressReply
    | ValveControl
    | ValveReply
    | ErrorReply
)

_HEAT_METERS = (MeterType.HEAT_HEATING, MeterType.HEAT_COOLING)


def _di_bytes(di: int, order: DiOrder) -> bytes:
    return di.to_bytes(2, "big" if order is DiOrder.HIGH_FIRST else "little")


def to_frame(
    message: Message,
    meter_type: MeterType,
    address: MeterAddress,
    *,
    di_order: DiOrder = DiOrder.HIGH_FIRST,
) -> Frame:
    """The frame that carries ``message`` to or from the meter at ``address``."""
    ser = bytes([message.ser])
    match message:
        case ReadCurrentData():
            function, reply, data = Function.READ_DATA, False, _di_bytes(0x901F, di_order) + ser
        case CurrentData(_, current, settlement, clock, status):
            function, reply = Function.READ_DATA, True
            data = (
                _di_bytes(0x901F, di_order)
                + ser
                + current.to_wire()
                + settlement.to_wire()
                + _time_to_wire(clock)
                + status.to_wire()
            )
        case ReadAddress() | AddressReply():
            function, reply = Function.READ_ADDRESS, isinstance(message, AddressReply)
            data = _di_bytes(0x810A, di_order) + ser
        case ValveControl(_, action):
            function, reply = Function.WRITE_DATA, False
            data = _di_bytes(0xA017, di_order) + ser + bytes([action])
        case ValveReply(_, status):
            function, reply = Function.WRITE_DATA, True
            data = _di_bytes(0xA017, di_order) + ser + (status.to_wire() if status else b"")
        case ErrorReply(error_function, _, status):
            return Frame(meter_type, address, error_function, ser + status.to_wire(), True, True)
        case _:
            assert_never(message)
    return Frame(meter_type, address, function, data, reply)


def from_frame(frame: Frame, *, di_order: DiOrder = DiOrder.HIGH_FIRST) -> Message:
    """The message ``frame`` carries.

    Raises `UnsupportedDataError` for a frame with a DI or function this codec has no message
    for, and `Cjt188Error` for data that is malformed.
    """
    data = frame.data
    if frame.error:
        if len(data) not in (3, 5):  # SER ST, or (some vendors) DI SER ST
            raise Cjt188Error("an error reply carries SER and ST", data=data)
        return ErrorReply(frame.function, data[-3], Status(int.from_bytes(data[-2:], "little")))
    if len(data) < 3:
        raise Cjt188Error("data is shorter than DI and SER", data=data)
    di = int.from_bytes(data[:2], "big" if di_order is DiOrder.HIGH_FIRST else "little")
    ser, payload = data[2], data[3:]
    key = (frame.function, frame.reply, di)
    if key == (Function.READ_DATA, False, DataId.CURRENT_DATA) and not payload:
        return ReadCurrentData(ser)
    if key == (Function.READ_DATA, True, DataId.CURRENT_DATA) and len(payload) == 19:
        if frame.meter_type in _HEAT_METERS:
            raise UnsupportedDataError(
                "a heat meter's 901F layout is not supported",
                function=frame.function,
                di=di,
                ser=ser,
                data=data,
            )
        return CurrentData(
            ser,
            Quantity.from_wire(payload[0:5]),
            Quantity.from_wire(payload[5:10]),
            _time_from_wire(payload[10:17]),
            Status(int.from_bytes(payload[17:19], "little")),
        )
    if key[0] == Function.READ_ADDRESS and di == DataId.ADDRESS and not payload:
        return AddressReply(ser) if frame.reply else ReadAddress(ser)
    if key == (Function.WRITE_DATA, False, DataId.VALVE_CONTROL) and len(payload) == 1:
        try:
            return ValveControl(ser, ValveAction(payload[0]))
        except ValueError:
            pass  # an unknown action is refused like any other unsupported request
    if key == (Function.WRITE_DATA, True, DataId.VALVE_CONTROL) and len(payload) in (0, 2):
        status = Status(int.from_bytes(payload, "little")) if payload else None
        return ValveReply(ser, status)
    raise UnsupportedDataError(
        f"no message for function {frame.function:02X}H, DI {di:04X}H, {len(payload)} bytes",
        function=frame.function,
        di=di,
        ser=ser,
        data=data,
    )
