"""Register maps as data: what a device's registers mean and how their values are laid out.

A `RegisterEntry` is one value: its name, the table it lives in (FC03 holding or FC04 input),
its address, data type, word order, scale and unit. A `RegisterMap` is a device's entries. Values
are `Decimal` both ways, because meter readings end up on bills:

* integers are ``raw × scale`` exactly (a litre counter with scale 0.001 reads in m³);
* a float32 becomes the shortest decimal that rounds back to the same float32, so the
  0x4365CCCD a meter sends reads 229.8, not 229.8000030517578.

Bytes within a register are big-endian (Modbus fixes that); the order of the two registers of a
32-bit value is not fixed, so each entry says which comes first.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from devices.modbus.codes import READ_FUNCTIONS, FunctionCode
from devices.modbus.errors import RegisterValueError

__all__ = ["DataType", "RegisterEntry", "RegisterMap", "WordOrder"]


class DataType(enum.Enum):
    """How a value is stored: its struct format and how many 16-bit registers it takes."""

    UINT16 = ("H", 1)
    INT16 = ("h", 1)
    UINT32 = ("I", 2)
    INT32 = ("i", 2)
    FLOAT32 = ("f", 2)

    @property
    def registers(self) -> int:
        """Registers one value occupies."""
        return self.value[1]

    @property
    def struct_format(self) -> str:
        """Big-endian `struct` format of the value's bytes (high word first)."""
        return ">" + self.value[0]


class WordOrder(enum.Enum):
    """Which register of a 32-bit value comes first on the wire."""

    #: "ABCD", big-endian: the high word first (Eastron, most meters, pymodbus's default).
    HIGH_FIRST = "high_first"
    #: "CDAB": the low word first (some water and heat meters).
    LOW_FIRST = "low_first"


def _float32_decimal(packed: bytes) -> Decimal:
    (value,) = struct.unpack(">f", packed)
    if not math.isfinite(value):
        return Decimal(repr(value))  # NaN / ±Infinity: a meter's way of saying "no value"
    text = f"{value:.9g}"  # 9 significant digits always round-trip a float32
    for digits in range(1, 9):
        if struct.pack(">f", float(shorter := f"{value:.{digits}g}")) == packed:
            text = shorter
            break
    # Format positionally: Decimal("1e+02") is 100, but reads badly on a bill.
    return Decimal(format(Decimal(text), "f"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterEntry:
    """One value in a device's register map."""

    name: str
    function: FunctionCode
    address: int
    data_type: DataType
    word_order: WordOrder = WordOrder.HIGH_FIRST
    scale: Decimal = Decimal(1)
    unit: str = ""
    #: Whether a master may write it (FC06/FC10); only holding registers can be written.
    writable: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"entry name {self.name!r} is not an identifier")
        if self.function not in READ_FUNCTIONS:
            raise ValueError(f"{self.name}: registers live in table 03 or 04")
        object.__setattr__(self, "function", FunctionCode(self.function))
        if not 0 <= self.address <= 0x10000 - self.data_type.registers:
            raise ValueError(f"{self.name}: address {self.address} is out of range")
        if not isinstance(self.scale, Decimal) or not self.scale.is_finite() or self.scale <= 0:
            raise ValueError(f"{self.name}: scale must be a positive Decimal")
        if self.writable and self.function != FunctionCode.READ_HOLDING_REGISTERS:
            raise ValueError(f"{self.name}: only holding registers are writable")

    @property
    def count(self) -> int:
        """Registers the entry occupies."""
        return self.data_type.registers

    @property
    def end(self) -> int:
        """The address just past the entry."""
        return self.address + self.count

    @property
    def modulus(self) -> Decimal | None:
        """Where an unsigned counter rolls over, in engineering units (None for the others)."""
        if self.data_type is DataType.UINT16:
            return 0x10000 * self.scale
        if self.data_type is DataType.UINT32:
            return 0x1_0000_0000 * self.scale
        return None

    def decode(self, registers: Sequence[int]) -> Decimal:
        """The value held in ``registers`` (exactly `count` of them)."""
        if len(registers) != self.count:
            raise RegisterValueError(
                f"needs {self.count} registers, got {len(registers)}", name=self.name
            )
        words = list(registers)
        if self.word_order is WordOrder.LOW_FIRST:
            words.reverse()
        packed = struct.pack(f">{len(words)}H", *words)
        if self.data_type is DataType.FLOAT32:
            value = _float32_decimal(packed)
            return value if self.scale == 1 else value * self.scale
        (raw,) = struct.unpack(self.data_type.struct_format, packed)
        return Decimal(raw) * self.scale

    def encode(self, value: Decimal | int | float) -> tuple[int, ...]:
        """The registers that hold ``value`` (in engineering units), in wire order."""
        try:
            number = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
            raw_value = number / self.scale
            if self.data_type is DataType.FLOAT32:
                as_float = float(raw_value)
                if math.isinf(as_float) and raw_value.is_finite():
                    raise OverflowError("beyond the float32 range")
                packed = struct.pack(">f", as_float)
            else:
                raw = int(raw_value.to_integral_value())
                packed = struct.pack(self.data_type.struct_format, raw)
        except (struct.error, OverflowError, InvalidOperation, ValueError, TypeError) as exc:
            raise RegisterValueError(
                f"{value!r} does not fit a {self.data_type.name.lower()}", name=self.name
            ) from exc
        words = list(struct.unpack(f">{self.count}H", packed))
        if self.word_order is WordOrder.LOW_FIRST:
            words.reverse()
        return tuple(words)


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A device's register entries, checked for clashes, with lookups by name and address."""

    name: str
    entries: tuple[RegisterEntry, ...]
    _by_name: dict[str, RegisterEntry] = field(init=False, repr=False, compare=False)
    _by_register: dict[tuple[int, int], RegisterEntry] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        by_name: dict[str, RegisterEntry] = {}
        by_register: dict[tuple[int, int], RegisterEntry] = {}
        for entry in self.entries:
            if entry.name in by_name:
                raise ValueError(f"{self.name}: two entries are called {entry.name!r}")
            by_name[entry.name] = entry
            for address in range(entry.address, entry.end):
                if (clash := by_register.get((entry.function, address))) is not None:
                    raise ValueError(f"{self.name}: {entry.name} overlaps {clash.name}")
                by_register[(entry.function, address)] = entry
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_by_register", by_register)

    def __getitem__(self, name: str) -> RegisterEntry:
        """The entry called ``name`` (KeyError if there is none)."""
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        """Whether an entry is called ``name``."""
        return name in self._by_name

    def __iter__(self) -> Iterator[RegisterEntry]:
        """The entries, in map order."""
        return iter(self.entries)

    def __len__(self) -> int:
        """How many entries the map has."""
        return len(self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        """Entry names, in map order."""
        return tuple(entry.name for entry in self.entries)

    def at(self, function: int, address: int) -> RegisterEntry | None:
        """The entry that covers register ``address`` of table ``function``, if any."""
        return self._by_register.get((function, address))
