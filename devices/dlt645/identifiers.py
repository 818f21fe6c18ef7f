"""Data identifiers (DI) as data: what each one is called, its unit and its value format.

DL/T 645-2007 identifiers are four bytes ``DI3 DI2 DI1 DI0`` (written here as one number,
``0x00010000``; sent ``DI0`` first). DL/T 645-1997 ones are two bytes (``0x9010``, sent ``10 90``).
The two numbering schemes overlap, so every lookup names its `Standard`.

Formats are from the standard's tables as the `dlt645` package and public meter firmware give them;
the prepaid items (``0090xxxx``, ``0333xxxx``, ``040010xx``, ``02800020``) follow the State Grid
cost-control supplement. A meter may hold many more identifiers than this table: an unknown one
still travels (as raw bytes in `ReadReply.data`), only its value cannot be decoded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from devices.dlt645.errors import Dlt645Error, Reason
from devices.dlt645.values import (
    Block,
    Date,
    Digits,
    Format,
    Number,
    Status3,
    Time,
    Value,
    Word,
)

__all__ = [
    "IDENTIFIERS_1997",
    "IDENTIFIERS_2007",
    "Identifier",
    "Standard",
    "decode_value",
    "encode_value",
    "lookup",
]


class Standard(enum.StrEnum):
    """Which edition of DL/T 645 a frame or identifier belongs to."""

    V2007 = "2007"
    V1997 = "1997"

    @property
    def di_size(self) -> int:
        """Bytes in a data identifier: 4 (2007) or 2 (1997)."""
        return 4 if self is Standard.V2007 else 2


@dataclass(frozen=True, slots=True)
class Identifier:
    """One row of the table."""

    di: int
    name: str
    unit: str
    format: Format
    standard: Standard = Standard.V2007

    @property
    def code(self) -> str:
        """The identifier as written in the standard: ``00010000`` or ``9010``."""
        return f"{self.di:0{2 * self.standard.di_size}X}"


_KWH = Number(4, 2)
_KWH_SIGNED = Number(4, 2, signed=True)
_MONEY = Number(4, 2)
_VOLTS = Number(2, 1)
_AMPS = Number(3, 3, signed=True)
_KW = Number(3, 4, signed=True)
_PF = Number(2, 3, signed=True)
# 4 bytes per value and at most 200 data bytes, less the DI: a block reply carries up to 49.
_ENERGY_BLOCK = 49
_TARIFFS = {1: "sharp", 2: "peak", 3: "flat", 4: "valley"}
_PHASES = {1: "A", 2: "B", 3: "C"}


def _rows_2007() -> list[Identifier]:
    rows = [
        Identifier(0x00000000, "combined active energy, total", "kWh", _KWH_SIGNED),
        Identifier(0x00010000, "forward active energy, total", "kWh", _KWH),
    ]
    rows += [
        Identifier(0x00010000 | n << 8, f"forward active energy, tariff {n} ({label})", "kWh", _KWH)
        for n, label in _TARIFFS.items()
    ]
    rows += [
        Identifier(
            0x0001FF00,
            "forward active energy, block (total, tariff 1..n)",
            "kWh",
            Block(_KWH, _ENERGY_BLOCK),
        ),
        Identifier(0x00020000, "reverse active energy, total", "kWh", _KWH),
    ]
    rows += [
        Identifier(0x02010000 | n << 8, f"voltage, phase {p}", "V", _VOLTS)
        for n, p in _PHASES.items()
    ]
    rows.append(Identifier(0x0201FF00, "voltage, block (A, B, C)", "V", Block(_VOLTS, 3)))
    rows += [
        Identifier(0x02020000 | n << 8, f"current, phase {p}", "A", _AMPS)
        for n, p in _PHASES.items()
    ]
    rows.append(Identifier(0x0202FF00, "current, block (A, B, C)", "A", Block(_AMPS, 3)))
    rows.append(Identifier(0x02030000, "active power, total", "kW", _KW))
    rows += [
        Identifier(0x02030000 | n << 8, f"active power, phase {p}", "kW", _KW)
        for n, p in _PHASES.items()
    ]
    rows.append(Identifier(0x0203FF00, "active power, block (total, A, B, C)", "kW", Block(_KW, 4)))
    rows.append(Identifier(0x02060000, "power factor, total", "", _PF))
    rows += [
        Identifier(0x02060000 | n << 8, f"power factor, phase {p}", "", _PF)
        for n, p in _PHASES.items()
    ]
    rows.append(Identifier(0x0206FF00, "power factor, block (total, A, B, C)", "", Block(_PF, 4)))
    rows += [
        Identifier(0x02800002, "grid frequency", "Hz", Number(2, 2)),
        Identifier(0x02800020, "current price", "yuan/kWh", Number(4, 4)),
        Identifier(0x04000101, "date and weekday (0 = Sunday)", "", Date()),
        Identifier(0x04000102, "time", "", Time()),
        Identifier(0x04000401, "communication address", "", Digits(6)),
        Identifier(0x04000402, "meter number", "", Digits(6)),
    ]
    rows += [
        Identifier(0x04000500 | n, f"run status word {n}", "", Status3() if n == 3 else Word(2))
        for n in range(1, 8)
    ]
    rows += [
        Identifier(0x00900100, "remaining energy", "kWh", _KWH),
        Identifier(0x00900101, "overdraft energy", "kWh", _KWH),
        Identifier(0x00900200, "remaining money", "yuan", _MONEY),
        Identifier(0x00900201, "overdraft money", "yuan", _MONEY),
        Identifier(0x03330201, "purchase count (after the last purchase)", "", Number(2, 0)),
        Identifier(0x03330601, "total purchased money (after the last purchase)", "yuan", _MONEY),
        Identifier(0x04001001, "alarm money limit 1", "yuan", _MONEY),
        Identifier(0x04001002, "alarm money limit 2", "yuan", _MONEY),
    ]
    return rows


def _rows_1997() -> list[Identifier]:
    v97 = Standard.V1997
    return [
        Identifier(0x9010, "forward active energy, total", "kWh", _KWH, v97),
        Identifier(
            0x901F, "forward active energy, block (total, tariff 1..4)", "kWh", Block(_KWH, 5), v97
        ),
        Identifier(0xB611, "voltage, phase A", "V", Number(2, 0), v97),
        Identifier(0xB621, "current, phase A", "A", Number(2, 2), v97),
        Identifier(0xB630, "active power, total", "kW", _KW, v97),
        Identifier(0xC010, "date and weekday (0 = Sunday)", "", Date(), v97),
        Identifier(0xC011, "time", "", Time(), v97),
    ]


IDENTIFIERS_2007 = MappingProxyType({row.di: row for row in _rows_2007()})
"""The DL/T 645-2007 identifiers this package knows, by number."""

IDENTIFIERS_1997 = MappingProxyType({row.di: row for row in _rows_1997()})
"""The DL/T 645-1997 identifiers this package knows, by number."""

_TABLES = {Standard.V2007: IDENTIFIERS_2007, Standard.V1997: IDENTIFIERS_1997}


def lookup(di: int, standard: Standard = Standard.V2007) -> Identifier:
    """The table row of `di`; raises `Dlt645Error` (unknown_identifier) if there is none."""
    row = _TABLES[standard].get(di)
    if row is None:
        width = 2 * standard.di_size
        raise Dlt645Error(Reason.UNKNOWN_IDENTIFIER, f"{di:0{width}X} ({standard.value})")
    return row


def decode_value(di: int, data: bytes, standard: Standard = Standard.V2007) -> Value:
    """The value of identifier `di` carried in `data` (the bytes after the DI)."""
    return lookup(di, standard).format.decode(data)


def encode_value(di: int, value: Any, standard: Standard = Standard.V2007) -> bytes:
    """The bytes that carry `value` for identifier `di`."""
    return lookup(di, standard).format.encode(value)
