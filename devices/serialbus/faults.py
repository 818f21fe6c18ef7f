"""Faults a simulated device can be made to commit, and the table of faults currently active.

Each fault is attached to one device address and lasts for ``count`` replies, for ``duration_s``
seconds, for whichever of the two ends first, or (neither given) until cleared. The table is shared
between the bus thread, which applies it to every reply, and whichever thread injects faults, so
every method takes one lock; the bus thread holds it only for the few microseconds of a lookup.

Faults are applied to a reply in a fixed order — the byte is altered first, then garbage is wrapped
around the result — so combining faults composes the way line noise would.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["DEFAULT_SLOW_MS", "Fault", "FaultTable", "ReplyPlan"]

DEFAULT_SLOW_MS = 500.0  # beyond the reply timeout of a typical master at 2400 baud
_GARBAGE_MIN, _GARBAGE_MAX = 1, 8


class Fault(enum.Enum):
    """A misbehaviour of one device (or of the line next to it)."""

    NO_REPLY = "no_reply"
    """The device takes the request (and acts on it) but its reply is lost."""
    GARBAGE_BEFORE = "garbage_before"
    """Random bytes (or the ``garbage`` given) precede the reply."""
    GARBAGE_INSIDE = "garbage_inside"
    """One bit of one byte in the middle half of the reply is flipped."""
    GARBAGE_AFTER = "garbage_after"
    """Random bytes (or the ``garbage`` given) follow the reply."""
    BAD_CHECKSUM = "bad_checksum"
    """The checksum byte is altered (see :meth:`FaultTable.inject` for where it is)."""
    SLOW_REPLY = "slow_reply"
    """The reply starts ``delay_ms`` late."""
    VANISH = "vanish"
    """The device is gone for ``duration_s``: it neither hears requests nor answers them."""


@dataclass(frozen=True, slots=True)
class ReplyPlan:
    """What actually goes on the wire for one device reply."""

    data: bytes
    """The bytes to transmit; empty means the device stays silent."""
    delay_s: float
    """Extra delay before the first byte, on top of the line's turnaround."""
    faults: tuple[Fault, ...]
    """The faults that shaped this reply (each one consumed one of its ``count``)."""


@dataclass(slots=True)
class _Active:
    remaining: int | None
    until: float | None
    delay_s: float
    garbage: bytes | None
    position: int | None

    def live(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


class FaultTable:
    """The faults active on each device address; safe to use from any thread."""

    def __init__(
        self,
        addresses: Iterable[str],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._addresses = frozenset(addresses)
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, dict[Fault, _Active]] = {}

    def inject(
        self,
        address: str,
        fault: Fault,
        *,
        count: int | None = None,
        duration_s: float | None = None,
        delay_ms: float = DEFAULT_SLOW_MS,
        garbage: bytes | None = None,
        position: int | None = None,
    ) -> None:
        """Make ``address`` commit ``fault``, replacing the same fault if it was already active.

        ``count`` limits it to that many replies, ``duration_s`` to that many seconds from now.
        ``delay_ms`` is the extra delay of ``SLOW_REPLY``; ``garbage`` the exact bytes of
        ``GARBAGE_BEFORE``/``GARBAGE_AFTER`` (default: 1–8 random bytes per reply); ``position`` the
        index of the byte ``GARBAGE_INSIDE`` flips (default: random, in the middle half) or
        ``BAD_CHECKSUM`` alters (default: the device's ``checksum_offset`` attribute if it has one,
        else ``-1`` — DL/T 645 and CJ/T 188 frames end ``CS 16``, so their devices say ``-2``).
        ``VANISH`` needs ``duration_s`` and takes no ``count``: a vanished device hears nothing, so
        there is nothing to count.
        """
        if address not in self._addresses:
            raise ValueError(f"no device {address!r} on this bus")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if duration_s is not None and duration_s <= 0:
            raise ValueError(f"duration_s must be positive, not {duration_s}")
        if delay_ms < 0:
            raise ValueError(f"delay_ms must not be negative, not {delay_ms}")
        if fault is Fault.VANISH and (duration_s is None or count is not None):
            raise ValueError("VANISH takes duration_s and no count")
        now = self._clock()
        active = _Active(
            remaining=count,
            until=None if duration_s is None else now + duration_s,
            delay_s=delay_ms / 1000.0,
            garbage=None if garbage is None else bytes(garbage),
            position=position,
        )
        with self._lock:
            self._active.setdefault(address, {})[fault] = active

    def clear(self, address: str, fault: Fault | None = None) -> None:
        """Stop ``fault`` (or every fault) on ``address``."""
        if address not in self._addresses:
            raise ValueError(f"no device {address!r} on this bus")
        with self._lock:
            if fault is None:
                self._active.pop(address, None)
            else:
                self._active.get(address, {}).pop(fault, None)

    def active(self, address: str) -> frozenset[Fault]:
        """The faults currently in force on ``address``."""
        now = self._clock()
        with self._lock:
            faults = self._active.get(address, {})
            return frozenset(f for f, a in faults.items() if a.live(now))

    def vanished_until(self, address: str, now: float) -> float | None:
        """When ``address``, gone from the bus at ``now``, comes back; ``None`` if it is there."""
        with self._lock:
            entry = self._active.get(address, {}).get(Fault.VANISH)
            return entry.until if entry is not None and entry.live(now) else None

    def apply(self, address: str, reply: bytes, now: float, *, checksum_offset: int) -> ReplyPlan:
        """Shape the reply ``address`` wants to send by the faults active on it at ``now``."""
        with self._lock:
            faults = self._active.get(address)
            if not faults:
                return ReplyPlan(reply, 0.0, ())
            for fault in [f for f, a in faults.items() if not a.live(now)]:
                del faults[fault]
            return self._shape(faults, reply, checksum_offset)

    def _shape(self, faults: dict[Fault, _Active], reply: bytes, checksum_offset: int) -> ReplyPlan:
        # Called with the lock held, so random draws and count consumption stay consistent.
        if (lost := faults.get(Fault.NO_REPLY)) is not None:
            lost.consume()
            return ReplyPlan(b"", 0.0, (Fault.NO_REPLY,))
        applied: list[Fault] = []
        data = bytearray(reply)
        delay_s = 0.0
        if (slow := faults.get(Fault.SLOW_REPLY)) is not None:
            delay_s = slow.delay_s
            applied.append(Fault.SLOW_REPLY)
        if data and (inside := faults.get(Fault.GARBAGE_INSIDE)) is not None:
            data[self._inside_index(len(data), inside.position)] ^= 1 << self._rng.randrange(8)
            applied.append(Fault.GARBAGE_INSIDE)
        if data and (bad := faults.get(Fault.BAD_CHECKSUM)) is not None:
            index = bad.position if bad.position is not None else checksum_offset
            # XOR with 0xFF changes the byte whatever it was, so the checksum can never still match.
            data[index % len(data)] ^= 0xFF
            applied.append(Fault.BAD_CHECKSUM)
        if (before := faults.get(Fault.GARBAGE_BEFORE)) is not None:
            data[:0] = self._garbage(before)
            applied.append(Fault.GARBAGE_BEFORE)
        if (after := faults.get(Fault.GARBAGE_AFTER)) is not None:
            data += self._garbage(after)
            applied.append(Fault.GARBAGE_AFTER)
        for fault in applied:
            faults[fault].consume()
        return ReplyPlan(bytes(data), delay_s, tuple(applied))

    def _inside_index(self, size: int, position: int | None) -> int:
        if position is not None:
            return position % size
        # The middle half stays clear of preambles, start bytes and trailers whose corruption a
        # decoder would see as framing, not as the checksum error this fault is meant to provoke.
        low, high = size // 4, size - size // 4
        return self._rng.randrange(low, high) if high > low else self._rng.randrange(size)

    def _garbage(self, active: _Active) -> bytes:
        if active.garbage is not None:
            return active.garbage
        size = self._rng.randint(_GARBAGE_MIN, _GARBAGE_MAX)
        return self._rng.randbytes(size)
