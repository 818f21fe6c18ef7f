"""``courtyard sim dlt645|modbus|cjt188|lockboard``: standalone RS-485 device simulators.

Each command serves one simulated multi-drop line (an RS-485-to-Ethernet server, in effect) on
127.0.0.1 and prints the device addresses it serves — in the form a gateway's configuration
takes them — so a real master (the gateway, or any DL/T 645 / Modbus / CJ/T 188 / Kerong tool)
can be pointed at ``socket://127.0.0.1:PORT``.

The device lists are deterministic (addresses, starting values, rates): ``courtyard demo`` and
the tests build the same meters from these functions. Every meter advances on the bus's clock as
its model does: DL/T 645 energy at 60× real time (``speed``), Modbus energy with its active power
and volume with its flow rate, CJ/T 188 volume with its flow while the valve is open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Final, Literal

from devices.cjt188 import DiOrder, WaterMeter
from devices.cjt188 import RequestFramer as Cjt188Framer
from devices.dlt645 import Dlt645Meter
from devices.dlt645 import RequestFramer as Dlt645Framer
from devices.lockboard import LockBoard
from devices.lockboard import RequestFramer as LockboardFramer
from devices.modbus import MAX_UNIT, ModbusMeter, sdm120_meter, sdm630_meter, water_meter
from devices.modbus import RequestFramer as ModbusFramer
from devices.serialbus import BusDevice, BusServer, RequestFramer, run_bus

__all__ = [
    "MODBUS_LINE",
    "ModbusModel",
    "cjt188_devices",
    "dlt645_devices",
    "lockboard_devices",
    "make_cjt188_framer",
    "make_dlt645_framer",
    "make_lockboard_framer",
    "make_modbus_framer",
    "modbus_devices",
    "serve",
]

ModbusModel = Literal["sdm120", "sdm630", "water"]

MODBUS_LINE: Final[dict[str, int]] = {"sdm120": 2400, "sdm630": 9600, "water": 9600}
"""Each Modbus model's usual line rate (8N1): Eastron SDM120 2400, SDM630 and water 9600."""


def dlt645_devices(count: int, prepaid: int = 0, speed: float = 60.0) -> list[Dlt645Meter]:
    """``count`` meters with nameplate numbers 000000000001…, the first ``prepaid`` prepaid."""
    return [
        Dlt645Meter(
            f"{i:012d}",
            prepaid=i <= prepaid,
            energy_kwh=Decimal(1000 + 37 * i).quantize(Decimal("0.01")),
            speed=speed,
        )
        for i in range(1, count + 1)
    ]


def modbus_devices(count: int, model: ModbusModel) -> list[ModbusMeter]:
    """``count`` Modbus meters of register map ``model`` with unit ids 1…``count``.

    Electricity meters start at 1000 + 37·i kWh and draw 800 + 100·i W (SDM630: three times
    that); water meters start at 10 + 3.5·i m³ and flow 0.6 + 0.3·i m³/h with the valve open.
    """
    if not 1 <= count <= MAX_UNIT:
        raise ValueError(f"a Modbus line has 1..{MAX_UNIT} meters")
    meters: list[ModbusMeter] = []
    for i in range(1, count + 1):
        energy = Decimal(1000 + 37 * i)
        if model == "sdm120":
            meters.append(sdm120_meter(i, power_w=800 + 100 * i, energy_kwh=energy))
        elif model == "sdm630":
            meters.append(sdm630_meter(i, power_w=3 * (800 + 100 * i), energy_kwh=energy))
        else:
            meters.append(
                water_meter(
                    i,
                    flow_m3h=Decimal("0.6") + Decimal("0.3") * i,
                    total_m3=Decimal(10) + Decimal("3.5") * i,
                )
            )
    return meters


def cjt188_devices(count: int, di_order: DiOrder = DiOrder.HIGH_FIRST) -> list[WaterMeter]:
    """``count`` cold-water meters with addresses 00000000000001…, all with ``di_order``.

    Meter i starts at 20 + 4.5·i m³ (also its settlement-day reading) and flows
    0.6 + 0.3·i m³/h with the valve open.
    """
    return [
        WaterMeter(
            f"{i:014d}",
            di_order=di_order,
            total_m3=Decimal(20) + Decimal("4.5") * i,
            flow_m3h=Decimal("0.6") + Decimal("0.3") * i,
        )
        for i in range(1, count + 1)
    ]


def lockboard_devices(count: int) -> list[LockBoard]:
    """``count`` 16-lock boards numbered 0…count-1 (their DIP-switch addresses)."""
    return [LockBoard(n) for n in range(count)]


def serve(
    framer: RequestFramer,
    devices: Sequence[BusDevice],
    *,
    host: str,
    port: int,
    baud: int,
    char_bits: int,
    pace: bool,
    echo: Callable[[str], None],
    addresses: Sequence[str] | None = None,
) -> None:
    """Serve the line until Ctrl-C, announcing its URL and devices once it listens.

    ``addresses`` are the labels printed for the devices (as a gateway's configuration writes
    them); the devices' bus labels by default.
    """
    labels = list(addresses) if addresses is not None else [d.address for d in devices]
    if len(labels) != len(devices):
        raise ValueError("one address label per device")

    def ready(server: BusServer) -> None:
        echo(f"serving {len(devices)} devices on {server.url} ({baud} baud, paced={pace})")
        for label in labels:
            echo(f"  {label}")

    run_bus(
        framer,
        devices,
        host=host,
        port=port,
        baud=baud,
        char_bits=char_bits,
        pace=pace,
        ready=ready,
    )


def make_dlt645_framer() -> RequestFramer:
    """The request framer of a DL/T 645 line."""
    return Dlt645Framer()


def make_modbus_framer() -> RequestFramer:
    """The request framer of a Modbus RTU line."""
    return ModbusFramer()


def make_cjt188_framer() -> RequestFramer:
    """The request framer of a CJ/T 188 line."""
    return Cjt188Framer()


def make_lockboard_framer() -> RequestFramer:
    """The request framer of a Kerong lock-board line."""
    return LockboardFramer()
