"""The register maps Courtyard ships: Eastron SDM120 and SDM630 energy meters, and a water meter.

Addresses are PDU addresses (0-based: the manual's "3xxxx" register number minus 30001, or
"4xxxx" minus 40001). Eastron measurements are IEEE-754 float32 input registers (FC04), high word
first; several independent open-source integrations agree on the addresses below. The holding
registers (FC03/FC10, also float32) are device settings known from Eastron's manuals but not
checked against a real meter here; the meter model stores writes to them and does not act on them.

`WATER_METER` is Courtyard's reference map for an ultrasonic water meter with a motorised valve.
Water meters have no common Modbus map; this one has the shapes most vendors use (a litre counter
as uint32, flow as float32, small scaled integers, a valve register) and is what our simulator
speaks. A real model's map is written the same way, as data.
"""

from __future__ import annotations

from decimal import Decimal

from devices.modbus.codes import FunctionCode
from devices.modbus.registers import DataType, RegisterEntry, RegisterMap

__all__ = ["MAPS", "SDM120", "SDM630", "VALVE_CLOSED", "VALVE_FAULT", "VALVE_OPEN", "WATER_METER"]

_INPUT = FunctionCode.READ_INPUT_REGISTERS
_HOLDING = FunctionCode.READ_HOLDING_REGISTERS


def _floats(table: tuple[tuple[str, int, str], ...]) -> tuple[RegisterEntry, ...]:
    return tuple(
        RegisterEntry(
            name=name, function=_INPUT, address=address, data_type=DataType.FLOAT32, unit=unit
        )
        for name, address, unit in table
    )


def _settings(table: tuple[tuple[str, int], ...]) -> tuple[RegisterEntry, ...]:
    return tuple(
        RegisterEntry(
            name=name,
            function=_HOLDING,
            address=address,
            data_type=DataType.FLOAT32,
            writable=True,
        )
        for name, address in table
    )


# Eastron settings shared by SDM120 and SDM630 (float32 holding registers).
_EASTRON_SETTINGS = (
    ("parity_stop", 0x0012),  # 0 = 1 stop, no parity; 1 = even; 2 = odd; 3 = 2 stop, no parity
    ("modbus_address", 0x0014),  # 1–247
    ("baud_rate_code", 0x001C),  # 0 = 2400, 1 = 4800, 2 = 9600, 5 = 1200
)

SDM120 = RegisterMap(
    "Eastron SDM120",
    _floats(
        (
            ("voltage", 0x0000, "V"),
            ("current", 0x0006, "A"),
            ("active_power", 0x000C, "W"),
            ("apparent_power", 0x0012, "VA"),
            ("reactive_power", 0x0018, "VAr"),
            ("power_factor", 0x001E, ""),
            ("phase_angle", 0x0024, "°"),
            ("frequency", 0x0046, "Hz"),
            ("import_active_energy", 0x0048, "kWh"),
            ("export_active_energy", 0x004A, "kWh"),
            ("import_reactive_energy", 0x004C, "kVArh"),
            ("export_reactive_energy", 0x004E, "kVArh"),
            ("total_active_energy", 0x0156, "kWh"),
            ("total_reactive_energy", 0x0158, "kVArh"),
        )
    )
    + _settings(_EASTRON_SETTINGS),
)

SDM630 = RegisterMap(
    "Eastron SDM630",
    _floats(
        (
            ("voltage_l1", 0x0000, "V"),
            ("voltage_l2", 0x0002, "V"),
            ("voltage_l3", 0x0004, "V"),
            ("current_l1", 0x0006, "A"),
            ("current_l2", 0x0008, "A"),
            ("current_l3", 0x000A, "A"),
            ("active_power_l1", 0x000C, "W"),
            ("active_power_l2", 0x000E, "W"),
            ("active_power_l3", 0x0010, "W"),
            ("apparent_power_l1", 0x0012, "VA"),
            ("apparent_power_l2", 0x0014, "VA"),
            ("apparent_power_l3", 0x0016, "VA"),
            ("reactive_power_l1", 0x0018, "VAr"),
            ("reactive_power_l2", 0x001A, "VAr"),
            ("reactive_power_l3", 0x001C, "VAr"),
            ("power_factor_l1", 0x001E, ""),
            ("power_factor_l2", 0x0020, ""),
            ("power_factor_l3", 0x0022, ""),
            ("average_voltage", 0x002A, "V"),
            ("average_current", 0x002E, "A"),
            ("sum_current", 0x0030, "A"),
            ("total_active_power", 0x0034, "W"),
            ("total_apparent_power", 0x0038, "VA"),
            ("total_reactive_power", 0x003C, "VAr"),
            ("total_power_factor", 0x003E, ""),
            ("frequency", 0x0046, "Hz"),
            ("import_active_energy", 0x0048, "kWh"),
            ("export_active_energy", 0x004A, "kWh"),
            ("total_power_demand", 0x0054, "W"),
            ("total_active_energy", 0x0156, "kWh"),
        )
    )
    + _settings(_EASTRON_SETTINGS),
)

#: Valve register values of `WATER_METER` (write 0 or 1; the meter reports 3 when it is stuck).
VALVE_OPEN, VALVE_CLOSED, VALVE_FAULT = 0, 1, 3

WATER_METER = RegisterMap(
    "Courtyard reference water meter",
    (
        # A litre counter: uint32, high word first, read in m³. It rolls over at 4 294 967.295 m³.
        RegisterEntry(
            name="cumulative_flow",
            function=_INPUT,
            address=0x0000,
            data_type=DataType.UINT32,
            scale=Decimal("0.001"),
            unit="m³",
        ),
        RegisterEntry(
            name="flow_rate",
            function=_INPUT,
            address=0x0002,
            data_type=DataType.FLOAT32,
            unit="m³/h",
        ),
        RegisterEntry(
            name="reverse_flow",
            function=_INPUT,
            address=0x0004,
            data_type=DataType.UINT32,
            scale=Decimal("0.001"),
            unit="m³",
        ),
        RegisterEntry(
            name="water_temperature",
            function=_INPUT,
            address=0x0006,
            data_type=DataType.INT16,
            scale=Decimal("0.01"),
            unit="°C",
        ),
        RegisterEntry(
            name="battery_voltage",
            function=_INPUT,
            address=0x0007,
            data_type=DataType.UINT16,
            scale=Decimal("0.01"),
            unit="V",
        ),
        RegisterEntry(
            name="valve",
            function=_HOLDING,
            address=0x0010,
            data_type=DataType.UINT16,
            writable=True,
        ),
        RegisterEntry(
            name="modbus_address",
            function=_HOLDING,
            address=0x0011,
            data_type=DataType.UINT16,
            writable=True,
        ),
    ),
)

#: The shipped maps by a short configuration name.
MAPS = {"sdm120": SDM120, "sdm630": SDM630, "water": WATER_METER}
