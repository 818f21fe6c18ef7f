"""What happened on a simulated bus: counters, the wire log, and overlap detection.

The bus thread records; any thread reads a consistent :class:`BusStats` snapshot or waits for one
that satisfies a condition. Recording and snapshots share one :class:`threading.Condition`, so a
waiter wakes on every change instead of polling.

Overlaps are counted pairwise: when an interval is recorded it is compared with the intervals of
the opposite direction already on record, so each intersecting (request, reply) pair counts once,
whichever of the two was recorded second. Both directions are serialised on their own side (the
master sends one byte after another; the devices share one transmitter slot), so intervals of one
direction arrive in time order, and those that ended before a new interval starts can never meet a
later one either — they are dropped from the comparison set, which stays a handful long.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from devices.serialbus.faults import Fault
from devices.serialbus.wire import Direction, WireInterval

__all__ = ["BusStats", "DeviceCounters", "StatsRecorder"]

_LOG_LIMIT = 65_536  # ~1,000 poll cycles of 32 meters; old intervals fall off the front
_OPPOSITE = {Direction.REQUEST: Direction.REPLY, Direction.REPLY: Direction.REQUEST}


@dataclass(frozen=True, slots=True)
class DeviceCounters:
    """Per-device counts since the server started."""

    requests: int = 0
    """Requests the device answered (before faults): the ones addressed to it."""
    replies: int = 0
    """Replies put on the wire (a fault may have shaped them)."""
    faults: int = 0
    """Faults applied to its replies, plus one per ``VANISH`` window that took effect."""
    errors: int = 0
    """Times its ``respond`` raised (a simulator bug; logged, and the device stayed silent)."""


@dataclass(frozen=True, slots=True)
class BusStats:
    """A snapshot of a bus: totals, per-device counters and the wire log."""

    requests: int
    """Request frames received from the master."""
    unanswered: int
    """Requests no device answered: broadcasts, absent or vanished devices (not ``NO_REPLY``)."""
    overlaps: int
    """(request, reply) pairs whose wire intervals intersect: collisions on a real bus."""
    reply_collisions: int
    """Requests more than one device answered (their replies were garbled together)."""
    framer_errors: int
    """Times the framer raised instead of skipping garbage (a framer bug; logged)."""
    connections: int
    """Master connections accepted (a new one replaces the old)."""
    devices: Mapping[str, DeviceCounters]
    intervals: tuple[WireInterval, ...]
    """The most recent wire intervals (up to 65,536), in the order they were recorded."""
    overlapping: tuple[tuple[WireInterval, WireInterval], ...]
    """The (earlier, later) recorded pairs counted in ``overlaps``, for assertions and debugging."""

    def of(self, direction: Direction) -> tuple[WireInterval, ...]:
        """The recorded intervals in one direction."""
        return tuple(i for i in self.intervals if i.direction is direction)


@dataclass(slots=True)
class _Mutable:
    requests: int = 0
    replies: int = 0
    faults: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Totals:
    requests: int = 0
    unanswered: int = 0
    reply_collisions: int = 0
    framer_errors: int = 0
    connections: int = 0
    devices: dict[str, _Mutable] = field(default_factory=dict)


class StatsRecorder:
    """Collects a bus's statistics (written by the bus thread, read by anyone)."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self._changed = threading.Condition()
        self._totals = _Totals(devices={a: _Mutable() for a in addresses})
        self._log: collections.deque[WireInterval] = collections.deque(maxlen=_LOG_LIMIT)
        self._open: dict[Direction, collections.deque[WireInterval]] = {
            Direction.REQUEST: collections.deque(),
            Direction.REPLY: collections.deque(),
        }
        self._overlapping: collections.deque[tuple[WireInterval, WireInterval]] = collections.deque(
            maxlen=_LOG_LIMIT
        )
        self._overlaps = 0

    def interval(self, interval: WireInterval) -> None:
        """Log a wire interval; count its overlaps with the opposite direction."""
        with self._changed:
            self._log.append(interval)
            if interval.direction is not Direction.NOISE:
                candidates = self._open[_OPPOSITE[interval.direction]]
                while candidates and candidates[0].end <= interval.start:
                    candidates.popleft()
                for earlier in candidates:
                    if earlier.overlaps(interval):
                        self._overlaps += 1
                        self._overlapping.append((earlier, interval))
                self._open[interval.direction].append(interval)
            self._changed.notify_all()

    def request(self, answered_by: Sequence[str]) -> None:
        """Count a request frame and the devices that answered it (usually one, or none)."""
        with self._changing() as totals:
            totals.requests += 1
            totals.unanswered += not answered_by
            for device in answered_by:
                totals.devices[device].requests += 1

    def reply(self, device: str, faults: tuple[Fault, ...], *, sent: bool) -> None:
        """Count a device's reply: the faults that shaped it, and whether anything was sent."""
        with self._changing() as totals:
            totals.devices[device].faults += len(faults)
            totals.devices[device].replies += int(sent)

    def vanish(self, device: str) -> None:
        """Count a ``VANISH`` window that took effect on ``device``."""
        with self._changing() as totals:
            totals.devices[device].faults += 1

    def device_error(self, device: str) -> None:
        """Count a ``respond`` that raised."""
        with self._changing() as totals:
            totals.devices[device].errors += 1

    def collision(self) -> None:
        """Count a request that more than one device answered."""
        with self._changing() as totals:
            totals.reply_collisions += 1

    def framer_error(self) -> None:
        """Count a framer that raised."""
        with self._changing() as totals:
            totals.framer_errors += 1

    def connection(self) -> None:
        """Count an accepted master connection."""
        with self._changing() as totals:
            totals.connections += 1

    def snapshot(self) -> BusStats:
        """A consistent copy of everything recorded so far."""
        with self._changed:
            return self._snapshot()

    def wait_for(self, predicate: Callable[[BusStats], bool], timeout: float) -> BusStats:
        """Block until ``predicate(stats)`` holds; return those stats, or raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(stats := self._snapshot()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"bus stats did not reach the condition in {timeout} s")
                self._changed.wait(remaining)
            return stats

    @contextlib.contextmanager
    def _changing(self) -> Iterator[_Totals]:
        with self._changed:
            yield self._totals
            self._changed.notify_all()

    def _snapshot(self) -> BusStats:
        totals = self._totals
        return BusStats(
            requests=totals.requests,
            unanswered=totals.unanswered,
            overlaps=self._overlaps,
            reply_collisions=totals.reply_collisions,
            framer_errors=totals.framer_errors,
            connections=totals.connections,
            devices={
                address: DeviceCounters(c.requests, c.replies, c.faults, c.errors)
                for address, c in totals.devices.items()
            },
            intervals=tuple(self._log),
            overlapping=tuple(self._overlapping),
        )
