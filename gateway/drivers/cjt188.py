"""CJ/T 188-2004 water and gas meters: one 901F read → cumulative volume and valve state.

One read current data (901F) request answers every value this driver offers: ``volume_m3``
(the current cumulative flow, in m³; a meter counting litres is converted) and ``valve``
(``"open"``, ``"closed"``, or ``"fault"`` for a stuck or unknown valve). Requests go out with the
``FE FE`` wake-up preamble. A reply is accepted only from the meter's own address, for a read,
with the identifier asked (in the meter's DI byte order, ``di_order``: vendors differ); an error
reply (D6 set) from it proves the meter is there but the values are not, and becomes
:class:`~gateway.bus_errors.DeviceReplyError`.

Line: 2400 8E1. The standard sets no inter-frame gap; two character times keep a request off the
tail of the previous reply, as for DL/T 645.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from devices.cjt188 import (
    Cjt188Error,
    CurrentData,
    Decoder,
    DiOrder,
    ErrorReply,
    Frame,
    Function,
    MeterAddress,
    MeterType,
    ReadCurrentData,
    Unit,
    ValveState,
    encode,
    from_frame,
    to_frame,
)
from gateway.bus_errors import DeviceReplyError
from gateway.drivers.base import LineRule, ReadPlan, Request, Value, Values
from gateway.errors import ConfigError
from gateway.settings import MeterSettings

__all__ = ["LINE", "METER_TYPES", "PREAMBLE", "VALUES", "Cjt188Driver", "Cjt188ReplyDecoder"]

LINE: Final = LineRule(baud=2400, parity="E", gap_chars=2.0)
PREAMBLE: Final = 2

METER_TYPES: Final = {
    "cold_water": MeterType.COLD_WATER,
    "hot_water": MeterType.DOMESTIC_HOT_WATER,
    "drinking_water": MeterType.DRINKING_WATER,
    "reclaimed_water": MeterType.RECLAIMED_WATER,
    "gas": MeterType.GAS,
}
"""The ``meter_type`` setting → the ``T`` byte (heat meters' 901F layout is not supported)."""

VALUES: Final = frozenset({"volume_m3", "valve"})
"""What one 901F reply carries."""

_CURRENT_DATA: Final = 0x901F
_PER_LITRE: Final = Decimal("0.001")
_START, _PREAMBLE_BYTE = 0x68, 0xFE


class Cjt188ReplyDecoder:
    """The codec's stream :class:`~devices.cjt188.Decoder` behind the owner's decoder face.

    The codec counts ``FE`` wake-up bytes as dropped; this adapter does not count as garbage a
    run of ``FE`` that is directly followed by a ``68H`` (a preamble), so a clean line reads 0.
    """

    def __init__(self) -> None:
        self._decoder = Decoder()
        self._fe_run = 0
        self._preamble = 0
        self._checksum_errors = self._garbage = 0  # of decoders dropped by reset()

    def feed(self, data: bytes) -> list[object]:
        """Frames completed by ``data`` (garbage skipped and counted)."""
        for byte in data:
            if byte == _PREAMBLE_BYTE:
                self._fe_run += 1
                continue
            if byte == _START:
                self._preamble += self._fe_run
            self._fe_run = 0
        try:
            return list(self._decoder.feed(data))
        except Cjt188Error:  # the hunt checked type and control code already
            return []

    def idle(self) -> list[object]:
        """CJ/T 188 frames carry their length: a quiet line reveals nothing more."""
        return []

    def reset(self) -> None:
        """Drop a partial frame (its bytes count as garbage)."""
        self._checksum_errors = self.checksum_errors
        self._garbage = self.garbage_bytes + len(self._decoder.pending)
        self._decoder = Decoder()
        self._fe_run = self._preamble = 0

    @property
    def checksum_errors(self) -> int:
        """CS failures seen."""
        return self._checksum_errors + self._decoder.checksum_errors

    @property
    def garbage_bytes(self) -> int:
        """Noise bytes dropped (a preamble is not noise)."""
        return self._garbage + max(0, self._decoder.discarded - self._preamble)


class Cjt188Driver:
    """Reads one CJ/T 188 meter's volume and valve state."""

    protocol = "cjt188"

    def __init__(self, settings: MeterSettings) -> None:
        where = f"meters.{settings.id}"
        try:
            self.address = MeterAddress(settings.address)
        except Cjt188Error as exc:
            raise ConfigError(f"{where}.address", str(exc)) from exc
        if self.address.is_wildcard:
            raise ConfigError(f"{where}.address", "a meter has a 14-digit address")
        self.meter_type = METER_TYPES[settings.meter_type or "cold_water"]
        self.di_order = DiOrder(settings.di_order or DiOrder.HIGH_FIRST.value)
        unknown = [v for v in settings.values if v not in VALUES]
        if unknown:
            raise ConfigError(f"{where}.values", f"CJ/T 188 cannot read {unknown}")
        self.device = settings.id
        self.bus = settings.bus
        self.values = tuple(settings.values)
        self._plans = (self._read(),)

    def plan(self) -> tuple[ReadPlan, ...]:
        """One 901F read for every configured value."""
        return self._plans

    def _read(self) -> ReadPlan:
        address, di_order = self.address, self.di_order
        di = _CURRENT_DATA.to_bytes(2, "big" if di_order is DiOrder.HIGH_FIRST else "little")

        def accept(frame: object) -> bool:
            if not (
                isinstance(frame, Frame)
                and frame.reply
                and frame.address == address
                and frame.function == Function.READ_DATA
            ):
                return False
            return frame.error or frame.data[:2] == di

        def values(frame: object) -> Values:
            assert isinstance(frame, Frame)
            try:
                message = from_frame(frame, di_order=di_order)
            except Cjt188Error as exc:
                raise DeviceReplyError(self.bus, self.device, f"bad reply: {exc}") from exc
            if isinstance(message, ErrorReply):
                raise DeviceReplyError(
                    self.bus, self.device, f"error reply, status {message.status.raw:04X}H"
                )
            if not isinstance(message, CurrentData):
                raise DeviceReplyError(self.bus, self.device, "not a 901F reply")
            got: dict[str, Value] = {}
            for name in self.values:
                if name == "volume_m3":
                    got[name] = self._cubic_metres(message)
                else:
                    got[name] = _VALVE.get(message.status.valve, "fault")
            return got

        request = to_frame(ReadCurrentData(), self.meter_type, address, di_order=di_order)
        data = encode(request, preamble=PREAMBLE)
        return ReadPlan(Request(data, Cjt188ReplyDecoder, accept), values)

    def _cubic_metres(self, message: CurrentData) -> Value:
        current = message.current
        if current.unit is Unit.M3:
            return current.value
        if current.unit is Unit.L:
            return current.value * _PER_LITRE
        raise DeviceReplyError(self.bus, self.device, f"volume in unit {current.unit.name}")


_VALVE: Final = {ValveState.OPEN: "open", ValveState.CLOSED: "closed"}
