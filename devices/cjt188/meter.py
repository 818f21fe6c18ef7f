"""A simulated CJ/T 188 water meter with a valve, for the simulated bus (`BusDevice`).

It answers what the typed messages cover — read current data (901F), read address (810A, also
to the wildcard address) and valve control (A017) — and gives an error reply (D6 set, SER echoed,
ST) to any other request addressed to it. Requests for other addresses, replies on the line and
frames it cannot read get silence, as on a real line.

Water flows at ``flow_m3h`` while the valve is open; the counter shows hundredths of m³ and rolls
over after 999999.99 m³ like the register it is. A jammed valve (`valve_jammed`) ignores control
and reports "abnormal", which is what a gateway must notice. Time is the bus's ``now`` (monotonic
seconds); the meter's real-time clock, when it has one, comes from ``clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from devices.cjt188.errors import Cjt188Error, UnsupportedDataError
from devices.cjt188.frame import Frame, MeterAddress, MeterType, decode, encode
from devices.cjt188.messages import (
    AddressReply,
    CurrentData,
    DiOrder,
    ErrorReply,
    Message,
    Quantity,
    ReadAddress,
    ReadCurrentData,
    Status,
    ValveAction,
    ValveControl,
    ValveReply,
    ValveState,
    from_frame,
    to_frame,
)

__all__ = ["WaterMeter"]

_ROLLOVER = Decimal(1_000_000)
_HUNDREDTH = Decimal("0.01")
_SECONDS_PER_HOUR = Decimal(3600)


class WaterMeter:
    """A CJ/T 188 water meter at ``address`` (14 nameplate digits)."""

    #: Where the bus simulator's BAD_CHECKSUM fault strikes a reply: CS, before the closing 16H.
    checksum_offset = -2

    def __init__(
        self,
        address: str,
        *,
        meter_type: MeterType = MeterType.COLD_WATER,
        di_order: DiOrder = DiOrder.HIGH_FIRST,
        total_m3: Decimal | int | str = 0,
        settlement_m3: Decimal | int | str | None = None,
        flow_m3h: Decimal | int | str = Decimal("0.6"),
        valve: ValveState = ValveState.OPEN,
        battery_low: bool = False,
        clock: Callable[[], datetime] | None = None,
        preamble: int = 2,
    ) -> None:
        self.meter_address = MeterAddress(address)
        if self.meter_address.is_wildcard:
            raise ValueError("a meter's own address cannot contain AA")
        if meter_type is MeterType.WILDCARD:
            raise ValueError("a meter has a real type")
        #: The bus's label for this device.
        self.address = f"cjt188:{self.meter_address.digits}"
        self.meter_type = meter_type
        self.di_order = di_order
        self.total = Decimal(total_m3)
        self.settlement = Decimal(total_m3 if settlement_m3 is None else settlement_m3)
        self.flow_m3h = Decimal(flow_m3h)
        self.valve = valve
        self.battery_low = battery_low
        #: A stuck valve: control requests are acknowledged but it reports ABNORMAL.
        self.valve_jammed = False
        self._clock = clock
        self._preamble = preamble
        self._last: float | None = None
        self._reading(self.total)  # fail early if the counter cannot show it

    def __repr__(self) -> str:
        return f"WaterMeter({self.meter_address.digits!r})"

    @property
    def status(self) -> Status:
        """The ST word the meter reports now."""
        return Status.of(self.valve, battery_low=self.battery_low)

    def advance(self, now: float) -> None:
        """Let water flow up to ``now``; the first call only starts the clock."""
        last, self._last = self._last, now if self._last is None else max(now, self._last)
        if last is None or now <= last or self.valve is not ValveState.OPEN:
            return
        flowed = self.flow_m3h * Decimal(repr(now - last)) / _SECONDS_PER_HOUR
        self.total = (self.total + flowed) % _ROLLOVER

    def settle(self) -> None:
        """Settlement day: the current reading becomes the settlement-day reading."""
        self.settlement = self.total

    def respond(self, request: bytes, now: float) -> bytes | None:
        """Answer one request frame from the bus, or stay silent (`BusDevice`)."""
        try:
            frame = decode(request)
        except Cjt188Error:
            return None
        if (
            frame.reply
            or frame.meter_type not in (self.meter_type, MeterType.WILDCARD)
            or not frame.address.matches(self.meter_address)
        ):
            return None
        self.advance(now)
        try:
            message = from_frame(frame, di_order=self.di_order)
        except UnsupportedDataError as unsupported:
            answer: Message | None = ErrorReply(frame.function, unsupported.ser, self.status)
        except Cjt188Error:
            return None
        else:
            answer = self.handle(message)
        if answer is None:
            return None
        reply = to_frame(answer, self.meter_type, self.meter_address, di_order=self.di_order)
        return encode(reply, preamble=self._preamble)

    def handle(self, message: Message) -> Message | None:
        """The reply to a request message addressed to this meter (None for anything else)."""
        match message:
            case ReadCurrentData(ser):
                return CurrentData(
                    ser,
                    Quantity(self._reading(self.total)),
                    Quantity(self._reading(self.settlement)),
                    self._clock() if self._clock is not None else None,
                    self.status,
                )
            case ReadAddress(ser):
                return AddressReply(ser)
            case ValveControl(ser, action):
                if self.valve_jammed:
                    self.valve = ValveState.ABNORMAL
                else:
                    self.valve = (
                        ValveState.OPEN if action is ValveAction.OPEN else ValveState.CLOSED
                    )
                return ValveReply(ser, self.status)
        return None

    def frame(self, message: Message) -> Frame:
        """``message`` in a frame from this meter (for tests and tools)."""
        return to_frame(message, self.meter_type, self.meter_address, di_order=self.di_order)

    @staticmethod
    def _reading(total: Decimal) -> Decimal:
        reading = total.quantize(_HUNDREDTH, rounding=ROUND_DOWN)
        if not 0 <= reading < _ROLLOVER:
            raise ValueError(f"{total} m³ does not fit XXXXXX.XX")
        return reading
