"""Device-family drivers for the RS-485 buses: codecs from :mod:`devices` bound to bus requests.

One module per family (``dlt645``, ``lockboard``, ``modbus``, ``cjt188``); see
:mod:`gateway.drivers.base` for the interface. :func:`meter_driver` builds the driver a meter's
``protocol`` names; :func:`bus_gap_s` gives the idle gap a bus needs for the protocols on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from gateway.drivers import cjt188, dlt645, lockboard, modbus
from gateway.drivers.base import LineRule, MeterDriver, ReadPlan, Request, Value, Values
from gateway.drivers.cjt188 import Cjt188Driver
from gateway.drivers.dlt645 import Dlt645Driver
from gateway.drivers.lockboard import LockBoardDriver
from gateway.drivers.modbus import ModbusDriver
from gateway.errors import ConfigError
from gateway.settings import BusSettings, MeterSettings

__all__ = [
    "LINE_RULES",
    "METER_DRIVERS",
    "Cjt188Driver",
    "Dlt645Driver",
    "LineRule",
    "LockBoardDriver",
    "MeterDriver",
    "ModbusDriver",
    "ReadPlan",
    "Request",
    "Value",
    "Values",
    "bus_gap_s",
    "meter_driver",
]

METER_DRIVERS: Final[dict[str, Callable[[MeterSettings], MeterDriver]]] = {
    "dlt645": Dlt645Driver,
    "modbus": ModbusDriver,
    "cjt188": Cjt188Driver,
}
"""Meter driver factories by the ``protocol`` of :class:`~gateway.settings.MeterSettings`."""

LINE_RULES: Final[dict[str, LineRule]] = {
    "dlt645": dlt645.LINE,
    "lockboard": lockboard.LINE,
    "modbus": modbus.LINE,
    "cjt188": cjt188.LINE,
}
"""Each protocol's usual line settings and inter-frame gap."""


def meter_driver(settings: MeterSettings) -> MeterDriver:
    """The driver for one configured meter; :class:`ConfigError` if its protocol has none."""
    factory = METER_DRIVERS.get(settings.protocol)
    if factory is None:
        raise ConfigError(f"meters.{settings.id}.protocol", f"no driver for {settings.protocol}")
    return factory(settings)


def bus_gap_s(bus: BusSettings, protocols: Iterable[str]) -> float:
    """The idle gap before each request: the setting, else the strictest rule on the bus."""
    if bus.gap_ms is not None:
        return bus.gap_ms / 1000.0
    rules = [LINE_RULES[p] for p in set(protocols) if p in LINE_RULES] or [dlt645.LINE]
    return max(rule.gap_s(bus.baud, bus.char_bits) for rule in rules)
