"""A simulated Modbus RTU meter that sits on a simulated bus (`devices.serialbus.BusDevice`).

It keeps one `Decimal` per entry of its register map and answers FC03/FC04 reads and FC06/FC10
writes from them, as the real devices do:

* a read or write that touches a register the map does not define, or a write to a read-only or
  partial entry, gets exception 02; an unsupported function gets exception 01, a bad quantity 03;
* a request for another unit id gets **silence**, as on a real RS-485 line. (pymodbus 3.16.1's
  simulator answers exception 04 instead; see docs/protocol-modbus.md.)
* a broadcast (unit 0) write is carried out and not answered; a broadcast read is ignored.

Values move with time: each `Accumulator` integrates a rate into a total (energy from power,
volume from flow), optionally held still by a gate (a closed valve), and unsigned counters roll
over as real ones do. Time is the bus's ``now`` (monotonic seconds), so tests can drive it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from devices.modbus.codes import BROADCAST, MAX_UNIT, MIN_UNIT, ExceptionCode, FunctionCode
from devices.modbus.errors import IllegalRequestError, ModbusError
from devices.modbus.frames import (
    ExceptionReply,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
    decode_request,
    encode,
)
from devices.modbus.register_maps import SDM120, SDM630, VALVE_CLOSED, VALVE_OPEN, WATER_METER
from devices.modbus.registers import RegisterEntry, RegisterMap

__all__ = ["Accumulator", "ModbusMeter", "sdm120_meter", "sdm630_meter", "water_meter"]

Number = Decimal | int | float | str
_HOLDING = FunctionCode.READ_HOLDING_REGISTERS
_KWH_PER_WATT_SECOND = Decimal(1) / Decimal(3_600_000)
_M3_PER_M3H_SECOND = Decimal(1) / Decimal(3600)


@dataclass(frozen=True, slots=True)
class Accumulator:
    """``total += rate × per_second × elapsed seconds``, unless ``gate`` is nonzero.

    While the gate is shut the rate also reads 0: a closed valve has no flow.
    """

    total: str
    rate: str
    per_second: Decimal
    gate: str | None = None


def _decimal(value: Number) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


class ModbusMeter:
    """A meter with unit id ``unit_id`` whose registers follow ``register_map``."""

    #: Where the bus simulator's BAD_CHECKSUM fault strikes a reply: the CRC's high byte, last.
    checksum_offset = -1

    def __init__(
        self,
        unit_id: int,
        register_map: RegisterMap,
        *,
        values: Mapping[str, Number] | None = None,
        accumulators: Iterable[Accumulator] = (),
    ) -> None:
        if not MIN_UNIT <= unit_id <= MAX_UNIT:
            raise ValueError(f"unit id {unit_id} is outside {MIN_UNIT}–{MAX_UNIT}")
        self.unit_id = unit_id
        #: The bus's label for this device.
        self.address = f"modbus:{unit_id}"
        self.register_map = register_map
        self._values = {entry.name: Decimal(0) for entry in register_map}
        self._accumulators = tuple(accumulators)
        for accumulator in self._accumulators:
            for name in (accumulator.total, accumulator.rate, accumulator.gate):
                if name is not None and name not in register_map:
                    raise ValueError(f"{register_map.name} has no entry {name!r}")
        self._last: float | None = None
        for name, value in (values or {}).items():
            self.set_value(name, value)

    def __repr__(self) -> str:
        return f"ModbusMeter({self.unit_id}, {self.register_map.name!r})"

    def value(self, name: str) -> Decimal:
        """An entry's value as a master would read it (a gated rate reads 0)."""
        for accumulator in self._accumulators:
            if accumulator.rate == name and self._gated(accumulator):
                return Decimal(0)
        return self._values[name]

    def set_value(self, name: str, value: Number) -> None:
        """Set an entry (the demand of a rate, a setting, a fault); checked against the map."""
        entry = self.register_map[name]
        number = _decimal(value)
        entry.encode(number)  # raises RegisterValueError when the registers cannot hold it
        self._values[name] = number

    def advance(self, now: float) -> None:
        """Move the totals on to ``now``; the first call only starts the clock."""
        last, self._last = self._last, now if self._last is None else max(now, self._last)
        if last is None or now <= last:
            return  # the clock starts, or it did not move (a monotonic clock never goes back)
        elapsed = Decimal(repr(now - last))
        for accumulator in self._accumulators:
            if self._gated(accumulator):
                continue
            total = self._values[accumulator.total] + (
                self._values[accumulator.rate] * accumulator.per_second * elapsed
            )
            modulus = self.register_map[accumulator.total].modulus
            self._values[accumulator.total] = total % modulus if modulus is not None else total

    def respond(self, request: bytes, now: float) -> bytes | None:
        """Answer one request frame from the bus, or stay silent (`BusDevice`)."""
        try:
            decoded = decode_request(request)
        except IllegalRequestError as refusal:
            if refusal.unit != self.unit_id:
                return None
            return encode(ExceptionReply(self.unit_id, refusal.function, refusal.code))
        except ModbusError:
            return None  # noise, or a frame for nobody: a real slave drops it silently
        if decoded.unit not in (self.unit_id, BROADCAST):
            return None
        self.advance(now)
        reply = self.handle(decoded)
        return None if reply is None else encode(reply)

    def handle(self, request: Request) -> Reply | None:
        """Carry out a decoded request addressed to this meter; None for a broadcast."""
        if request.unit == BROADCAST:
            if not isinstance(request, ReadRequest):
                self._write(request.address, self._words(request))
            return None
        if isinstance(request, ReadRequest):
            registers = self._read(request.function, request.address, request.count)
            if registers is None:
                return self._refuse(request.function, ExceptionCode.ILLEGAL_DATA_ADDRESS)
            return ReadReply(self.unit_id, request.function, registers)
        function = (
            FunctionCode.WRITE_SINGLE_REGISTER
            if isinstance(request, WriteSingleRequest)
            else FunctionCode.WRITE_MULTIPLE_REGISTERS
        )
        code = self._write(request.address, self._words(request))
        if code is not None:
            return self._refuse(function, code)
        if isinstance(request, WriteSingleRequest):
            return WriteSingleReply(self.unit_id, request.address, request.value)
        return WriteMultipleReply(self.unit_id, request.address, len(request.values))

    def _refuse(self, function: int, code: ExceptionCode) -> ExceptionReply:
        return ExceptionReply(self.unit_id, function, code)

    @staticmethod
    def _words(request: WriteSingleRequest | WriteMultipleRequest) -> tuple[int, ...]:
        return (request.value,) if isinstance(request, WriteSingleRequest) else request.values

    def _gated(self, accumulator: Accumulator) -> bool:
        return accumulator.gate is not None and self._values[accumulator.gate] != 0

    def _read(self, function: int, address: int, count: int) -> tuple[int, ...] | None:
        registers: list[int] = []
        position = address
        while position < address + count:
            entry = self.register_map.at(function, position)
            if entry is None:
                return None
            words = entry.encode(self.value(entry.name))
            registers.extend(words[position - entry.address :])
            position = entry.end
        # A read may end in the middle of an entry, as on real devices.
        return tuple(registers[:count])

    def _write(self, address: int, words: tuple[int, ...]) -> ExceptionCode | None:
        # Check every entry first, so a refused write changes nothing.
        updates: list[tuple[RegisterEntry, Decimal]] = []
        position = address
        while position < address + len(words):
            entry = self.register_map.at(_HOLDING, position)
            if (
                entry is None
                or not entry.writable
                or entry.address != position
                or entry.end > address + len(words)
            ):
                return ExceptionCode.ILLEGAL_DATA_ADDRESS
            offset = position - address
            updates.append((entry, entry.decode(words[offset : offset + entry.count])))
            position = entry.end
        for entry, value in updates:
            self._values[entry.name] = value
        return None


def sdm120_meter(
    unit_id: int = 1,
    *,
    power_w: Number = 1000,
    energy_kwh: Number = 0,
    values: Mapping[str, Number] | None = None,
) -> ModbusMeter:
    """A single-phase Eastron SDM120 drawing ``power_w``; its energy registers count up."""
    power = _decimal(power_w)
    defaults: dict[str, Number] = {
        "voltage": Decimal("229.8"),
        "current": (power / Decimal("229.8")).quantize(Decimal("0.001")),
        "active_power": power,
        "apparent_power": power,
        "power_factor": 1,
        "frequency": 50,
        "import_active_energy": energy_kwh,
        "total_active_energy": energy_kwh,
        "modbus_address": unit_id,
        "baud_rate_code": 0,
    }
    return ModbusMeter(
        unit_id,
        SDM120,
        values={**defaults, **(values or {})},
        accumulators=(
            Accumulator("import_active_energy", "active_power", _KWH_PER_WATT_SECOND),
            Accumulator("total_active_energy", "active_power", _KWH_PER_WATT_SECOND),
            Accumulator("import_reactive_energy", "reactive_power", _KWH_PER_WATT_SECOND),
            Accumulator("total_reactive_energy", "reactive_power", _KWH_PER_WATT_SECOND),
        ),
    )


def sdm630_meter(
    unit_id: int = 1,
    *,
    power_w: Number = 3000,
    energy_kwh: Number = 0,
    values: Mapping[str, Number] | None = None,
) -> ModbusMeter:
    """A three-phase Eastron SDM630 drawing ``power_w`` spread evenly over the phases."""
    power = _decimal(power_w)
    phase = power / 3
    defaults: dict[str, Number] = {
        "total_active_power": power,
        "total_apparent_power": power,
        "total_power_factor": 1,
        "average_voltage": 230,
        "frequency": 50,
        "import_active_energy": energy_kwh,
        "total_active_energy": energy_kwh,
        "modbus_address": unit_id,
        "baud_rate_code": 2,
    }
    for line in ("l1", "l2", "l3"):
        defaults |= {
            f"voltage_{line}": 230,
            f"current_{line}": (phase / 230).quantize(Decimal("0.001")),
            f"active_power_{line}": phase.quantize(Decimal("0.1")),
            f"power_factor_{line}": 1,
        }
    return ModbusMeter(
        unit_id,
        SDM630,
        values={**defaults, **(values or {})},
        accumulators=(
            Accumulator("import_active_energy", "total_active_power", _KWH_PER_WATT_SECOND),
            Accumulator("total_active_energy", "total_active_power", _KWH_PER_WATT_SECOND),
        ),
    )


def water_meter(
    unit_id: int = 1,
    *,
    flow_m3h: Number = Decimal("0.6"),
    total_m3: Number = 0,
    valve_closed: bool = False,
    values: Mapping[str, Number] | None = None,
) -> ModbusMeter:
    """A `WATER_METER` flowing ``flow_m3h`` while its valve is open."""
    defaults: dict[str, Number] = {
        "cumulative_flow": total_m3,
        "flow_rate": flow_m3h,
        "water_temperature": Decimal("15.5"),
        "battery_voltage": Decimal("3.6"),
        "valve": VALVE_CLOSED if valve_closed else VALVE_OPEN,
        "modbus_address": unit_id,
    }
    return ModbusMeter(
        unit_id,
        WATER_METER,
        values={**defaults, **(values or {})},
        accumulators=(
            Accumulator("cumulative_flow", "flow_rate", _M3_PER_M3H_SECOND, gate="valve"),
        ),
    )
