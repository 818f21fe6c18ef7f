"""The driver interface: what a device family provides so the bus owner can talk to it.

A driver binds one codec from :mod:`devices` to the bus owner. It knows bytes and frames; the
owner knows priorities, timing and statistics; neither knows the other's business. Adding a family
is one module: a :class:`MeterDriver` (built from :class:`~gateway.settings.MeterSettings`) whose
:meth:`~MeterDriver.plan` lists the :class:`ReadPlan`\\ s that read the configured values, a
:class:`~gateway.bus_exchange.ReplyDecoder` adapter around the codec's stream decoder, and a
:class:`LineRule` saying how the protocol wants its line.

Values are :class:`~decimal.Decimal` (or a short state string such as ``"open"``), never floats:
the sync wire refuses floats, and a meter's 1234.56 kWh must arrive as exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, TypeAlias

from gateway.bus_exchange import ReplyDecoder, ReplyMode

__all__ = ["LineRule", "MeterDriver", "ReadPlan", "Request", "Value", "Values"]

Value: TypeAlias = Decimal | str
Values: TypeAlias = Mapping[str, Value]


@dataclass(frozen=True, slots=True)
class Request:
    """Request bytes, a fresh decoder for the reply, and "this frame answers me"."""

    data: bytes
    decoder: Callable[[], ReplyDecoder]
    accept: Callable[[object], bool]
    reply: ReplyMode = ReplyMode.REQUIRED


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """One request and how to turn its reply into values.

    ``values(frame)`` raises :class:`~gateway.bus_errors.DeviceReplyError` when the device refused
    (it answered, so it is online, but the values are not available).
    """

    request: Request
    values: Callable[[object], Values]


@dataclass(frozen=True, slots=True)
class LineRule:
    """A protocol's line: its usual settings and the idle gap it needs between frames."""

    baud: int
    parity: str
    gap_chars: float
    """Idle time before a request, in character times."""
    min_gap_s: float = 0.001
    """A floor for fast lines, where timer granularity, not the protocol, sets the limit."""

    def gap_s(self, baud: int, char_bits: int) -> float:
        """The gap on a line of ``baud`` with ``char_bits`` bits per character."""
        return max(self.gap_chars * char_bits / baud, self.min_gap_s)


class MeterDriver(Protocol):
    """A meter family's side of reading one configured meter."""

    @property
    def protocol(self) -> str:
        """The ``protocol`` value of the meter settings this driver serves."""
        ...

    @property
    def device(self) -> str:
        """The meter's id (its name in statistics and events)."""
        ...

    def plan(self) -> tuple[ReadPlan, ...]:
        """The requests that read every configured value (as few as the protocol allows)."""
        ...
