"""Modbus RTU meters: configured values → register-block reads → ``Decimal`` values.

A meter names its register map (``model``: ``sdm120``, ``sdm630`` or ``water``, the maps of
:mod:`devices.modbus.register_maps`). Each gateway value name is one register of that map
(:data:`VALUES`), and :func:`~devices.modbus.plan_reads` groups the wanted registers into the
fewest FC03/FC04 blocks that touch no undefined register (many devices refuse such a read with
exception 02). A reply is taken only when it can answer the block asked —
:class:`~devices.modbus.ReplyDecoder` ``(expect=request)`` checks unit, function and byte count;
an exception reply from the unit proves the meter is there but the values are not, and becomes
:class:`~gateway.bus_errors.DeviceReplyError`. A request for an absent unit gets silence.

Line: usually 9600 (SDM120: 2400) 8N1. The gap before a request is the RTU frame end, 3.5
character times, and 1.75 ms above 19200 baud (:func:`~devices.modbus.inter_frame_gap`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from devices.modbus import (
    MAPS,
    VALVE_CLOSED,
    VALVE_OPEN,
    ExceptionReply,
    ModbusError,
    ReadBlock,
    ReadReply,
    ReadRequest,
    ReplyDecoder,
    encode,
    inter_frame_gap,
    plan_reads,
)
from gateway.bus_errors import DeviceReplyError
from gateway.drivers.base import LineRule, ReadPlan, Request, Value, Values
from gateway.errors import ConfigError
from gateway.settings import MeterSettings

__all__ = ["LINE", "VALUES", "ModbusDriver", "ModbusLineRule", "ModbusReplyDecoder"]


@dataclass(frozen=True, slots=True)
class ModbusLineRule(LineRule):
    """The RTU gap: :func:`~devices.modbus.inter_frame_gap` of the bus's rate and character."""

    def gap_s(self, baud: int, char_bits: int) -> float:
        """3.5 characters of ``char_bits`` at ``baud``; 1.75 ms above 19200 baud."""
        return inter_frame_gap(baud, bits_per_character=char_bits)


LINE: Final = ModbusLineRule(baud=9600, parity="N", gap_chars=3.5, min_gap_s=0.00175)

_KILO: Final = Decimal(1000)


def _same(value: Decimal) -> Value:
    return value


def _kilo(value: Decimal) -> Value:
    return value / _KILO


def _valve(value: Decimal) -> Value:
    if value == VALVE_OPEN:
        return "open"
    if value == VALVE_CLOSED:
        return "closed"
    return "fault"


_Convert = Callable[[Decimal], Value]

VALUES: Final[Mapping[str, Mapping[str, tuple[str, _Convert]]]] = {
    "sdm120": {
        "energy_kwh": ("import_active_energy", _same),
        "voltage_v": ("voltage", _same),
        "current_a": ("current", _same),
        "power_kw": ("active_power", _kilo),
    },
    "sdm630": {
        "energy_kwh": ("import_active_energy", _same),
        "voltage_v": ("voltage_l1", _same),  # phase A, as DL/T 645's 02010100
        "current_a": ("current_l1", _same),
        "power_kw": ("total_active_power", _kilo),
    },
    "water": {
        "volume_m3": ("cumulative_flow", _same),
        "flow_m3h": ("flow_rate", _same),
        "valve": ("valve", _valve),  # 0 open, 1 closed, 3 stuck ("fault")
    },
}
"""Per register map: gateway value name → (register entry name, conversion)."""


class ModbusReplyDecoder:
    """The codec's :class:`~devices.modbus.ReplyDecoder` for one request, as the owner needs it."""

    def __init__(self, request: ReadRequest) -> None:
        self._request = request
        self._decoder = ReplyDecoder(request)
        self._crc_errors = self._discarded = 0  # of decoders dropped by reset()

    def feed(self, data: bytes) -> list[object]:
        """Replies to the request completed by ``data`` (noise skipped and counted)."""
        try:
            return list(self._decoder.feed(data))
        except ModbusError:
            return []  # only a write echo can contradict its request; a read cannot

    def idle(self) -> list[object]:
        """RTU frames are found by length: a quiet line reveals nothing more."""
        return []

    def reset(self) -> None:
        """Drop a partial frame (its bytes count as garbage)."""
        self._crc_errors += self._decoder.crc_errors
        self._discarded += self._decoder.discarded + len(self._decoder.pending)
        self._decoder = ReplyDecoder(self._request)

    @property
    def checksum_errors(self) -> int:
        """CRC failures seen."""
        return self._crc_errors + self._decoder.crc_errors

    @property
    def garbage_bytes(self) -> int:
        """Noise bytes dropped."""
        return self._discarded + self._decoder.discarded


class ModbusDriver:
    """Reads one Modbus RTU meter's configured values, block by block."""

    protocol = "modbus"

    def __init__(self, settings: MeterSettings) -> None:
        where = f"meters.{settings.id}"
        if settings.model is None or settings.model not in MAPS:
            raise ConfigError(f"{where}.model", f"one of {sorted(MAPS)}")
        try:
            self.unit = int(settings.address)
        except ValueError:
            raise ConfigError(f"{where}.address", "a unit id 1..247") from None
        if not 1 <= self.unit <= 247:
            raise ConfigError(f"{where}.address", "a unit id 1..247")
        table = VALUES[settings.model]
        unknown = [v for v in settings.values if v not in table]
        if unknown:
            raise ConfigError(f"{where}.values", f"a {settings.model} meter cannot read {unknown}")
        self.device = settings.id
        self.bus = settings.bus
        self.model = settings.model
        wanted = {name: table[name] for name in settings.values}
        blocks = plan_reads(MAPS[settings.model], [entry for entry, _ in wanted.values()])
        self._plans = tuple(self._read(block, wanted) for block in blocks)

    def plan(self) -> tuple[ReadPlan, ...]:
        """One read per block of neighbouring registers."""
        return self._plans

    def _read(self, block: ReadBlock, wanted: Mapping[str, tuple[str, _Convert]]) -> ReadPlan:
        request = block.request(self.unit)
        names = {entry.name for entry in block.entries}
        mine = {name: spec for name, spec in wanted.items() if spec[0] in names}

        def decoder() -> ModbusReplyDecoder:
            return ModbusReplyDecoder(request)

        def accept(frame: object) -> bool:
            if isinstance(frame, ReadReply):
                return (
                    frame.unit == request.unit
                    and frame.function == request.function
                    and len(frame.values) == request.count
                )
            return (
                isinstance(frame, ExceptionReply)
                and frame.unit == request.unit
                and frame.function == request.function
            )

        def values(frame: object) -> Values:
            if isinstance(frame, ExceptionReply):
                raise DeviceReplyError(self.bus, self.device, f"exception {frame.code:02X}H")
            assert isinstance(frame, ReadReply)
            try:
                registers = block.decode(frame)
            except ModbusError as exc:
                raise DeviceReplyError(self.bus, self.device, f"bad value: {exc}") from exc
            got: dict[str, Value] = {}
            for name, (entry, convert) in mine.items():
                value = registers[entry]
                if not value.is_finite():
                    raise DeviceReplyError(self.bus, self.device, f"{name} is {value}")
                got[name] = convert(value)
            return got

        return ReadPlan(Request(encode(request), decoder, accept), values)
