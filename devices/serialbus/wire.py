"""Time on the wire: how long bytes take at a line rate, and who occupied the line when.

A half-duplex RS-485 pair carries one transmitter at a time. The simulator cannot see electrical
collisions (TCP delivers everything), so it *models* the line instead: every request and reply is
given the interval it would have occupied at the configured baud rate, and two intervals in opposite
directions that intersect are an overlap — on a real bus both frames would have been garbled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Direction", "LineTiming", "WireInterval"]


class Direction(enum.Enum):
    """Who was driving the line during a :class:`WireInterval`."""

    REQUEST = "request"  # the master, towards the devices
    REPLY = "reply"  # a device, towards the master
    NOISE = "noise"  # garbage on an idle line (see BusServer.garbage_on_idle)


@dataclass(frozen=True, slots=True)
class LineTiming:
    """Line rate of a serial line: ``char_bits`` bits per byte at ``baud`` bits per second.

    ``char_bits`` counts start, data, parity and stop bits: 11 for 8E1 (DL/T 645's default), 10 for
    8N1 (Modbus meters often, lock boards at 19200).
    """

    baud: int
    char_bits: int = 11

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError(f"baud must be positive, not {self.baud}")
        if not 7 <= self.char_bits <= 13:
            raise ValueError(f"char_bits must be 7..13 bits per byte, not {self.char_bits}")

    @property
    def byte_time(self) -> float:
        """Seconds one byte (one character frame) occupies the line."""
        return self.char_bits / self.baud

    def wire_time(self, size: int) -> float:
        """Seconds ``size`` back-to-back bytes occupy the line."""
        return size * self.byte_time


@dataclass(frozen=True, slots=True)
class WireInterval:
    """When a frame occupied the line (``time.monotonic`` seconds), in which direction, for whom.

    ``device`` is the address of the device that answered the request (or sent the reply); ``None``
    for a request no device answered (a broadcast, an absent or vanished device), and for noise.
    Without pacing the line is modelled as infinitely fast, so intervals have zero length.
    """

    start: float
    end: float
    direction: Direction
    device: str | None
    size: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"interval ends ({self.end}) before it starts ({self.start})")

    def overlaps(self, other: WireInterval) -> bool:
        """Whether the two intervals share any time (touching end to start does not count)."""
        return self.start < other.end and other.start < self.end
