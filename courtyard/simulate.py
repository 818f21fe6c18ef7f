"""``courtyard sim dlt645|lockboard``: standalone RS-485 device simulators behind ``socket://``.

Each command serves one simulated multi-drop line (an RS-485-to-Ethernet server, in effect) on
127.0.0.1 and prints the device addresses it serves, so a real master — the gateway, or any
DL/T 645 / Kerong tool — can be pointed at ``socket://127.0.0.1:PORT``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from devices.dlt645 import Dlt645Meter
from devices.dlt645 import RequestFramer as Dlt645Framer
from devices.lockboard import LockBoard
from devices.lockboard import RequestFramer as LockboardFramer
from devices.serialbus import BusDevice, BusServer, RequestFramer, run_bus

__all__ = ["dlt645_devices", "lockboard_devices", "serve"]


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
) -> None:
    """Serve the line until Ctrl-C, announcing its URL and devices once it listens."""

    def ready(server: BusServer) -> None:
        echo(f"serving {len(devices)} devices on {server.url} ({baud} baud, paced={pace})")
        for device in devices:
            echo(f"  {device.address}")

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


def make_lockboard_framer() -> RequestFramer:
    """The request framer of a Kerong lock-board line."""
    return LockboardFramer()
