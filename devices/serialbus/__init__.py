"""A simulated multi-drop RS-485 bus, served on TCP like an RS-485-to-Ethernet server.

Device families implement :class:`RequestFramer` and :class:`BusDevice`; :class:`BusServer` puts
their devices on one simulated line that a master opens with
``serial.serial_for_url(server.url)``, with optional pacing at the line rate, collision detection
and fault injection. See docs/serial-bus-simulator.md.

Errors: constructor and ``inject`` misuse raise :class:`ValueError`; a crash of the bus thread is
re-raised by :meth:`BusServer.stop`; device and framer exceptions are logged and counted
(``DeviceCounters.errors``, ``BusStats.framer_errors``) rather than allowed to stop the line.
"""

from __future__ import annotations

from devices.serialbus.device import BusDevice, RequestFramer
from devices.serialbus.faults import Fault
from devices.serialbus.run import run_bus
from devices.serialbus.server import BusServer
from devices.serialbus.stats import BusStats, DeviceCounters
from devices.serialbus.wire import Direction, LineTiming, WireInterval

__all__ = [
    "BusDevice",
    "BusServer",
    "BusStats",
    "DeviceCounters",
    "Direction",
    "Fault",
    "LineTiming",
    "RequestFramer",
    "WireInterval",
    "run_bus",
]
