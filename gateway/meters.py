"""Meter reading: scheduled reads per meter, on-demand reads, and the reading as a record.

Each bus with meters gets one schedule task (not one task per meter: 10,000 meters would be
10,000 sleeping tasks). The schedule keeps a heap of due times; a due meter's reads are submitted
to the bus owner at :attr:`~gateway.bus_exchange.Priority.POLL`, at most one read per meter in
flight, and the meter is due again ``interval_s`` after it was last due (fixed rate, so readings
do not drift later and later), or at once when it is late. First due times are spread with jitter
over one interval, so 32 meters configured alike do not all queue at t = 0. ``interval_s = 0``
means a continuous cycle: each meter is queued again as soon as its read finished, so the bus
polls back to back.

:meth:`MeterReader.read_now` reads one meter ahead of every scheduled poll
(:attr:`~gateway.bus_exchange.Priority.ON_DEMAND`); it is what a signed ``meter.read`` command
will call. Every reading, scheduled or not, is handed to ``record`` — the gateway appends it to
the outbox in a transaction of its own, and the uplink delivers it to the cloud exactly once.
A read whose every value failed yields no reading (the device's statistics say why); a read where
some values failed yields a reading of the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from gateway.bus import BusOwner
from gateway.bus_errors import ExchangeError, NoReplyError, UnknownDeviceError
from gateway.bus_exchange import Exchange, Outcome, Priority
from gateway.drivers import MeterDriver, ReadPlan, meter_driver
from gateway.drivers.base import Value
from gateway.settings import MeterKind, MeterSettings

__all__ = ["METER_READING", "MeterReader", "Reading"]

METER_READING = "meter.reading"

_POLL_DEADLINE_MIN_S: Final = 60.0  # a poll may wait this long for a bus that is down


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Reading:
    """One read of one meter: its values at ``read_at`` (wall-clock ms)."""

    meter: str
    bus: str
    values: Mapping[str, Value]
    read_at: int
    kind: MeterKind
    """What the meter measures (:attr:`~gateway.settings.MeterSettings.effective_kind`)."""
    missing: tuple[str, ...] = ()
    """Configured values the meter did not deliver this time."""

    def event_data(self) -> dict[str, Any]:
        """The ``meter.reading`` event: numbers as decimal strings (the sync wire has no floats)."""
        return {
            "meter": self.meter,
            "kind": self.kind,
            "bus": self.bus,
            "values": {
                name: format(value, "f") if isinstance(value, Decimal) else value
                for name, value in self.values.items()
            },
            "read_at": self.read_at,
        }


_MAX_DECIMALS: Final = Decimal("1e-9")
_MAX_MAGNITUDE: Final = Decimal("1e18")


def _on_wire(value: Value) -> Value | None:
    """``value`` as the sync wire carries it, or None when it cannot (not finite, too large)."""
    if not isinstance(value, Decimal):
        return value
    if not value.is_finite() or abs(value) >= _MAX_MAGNITUDE:
        return None
    if value.as_tuple().exponent < -9:  # type: ignore[operator]  # finite: an int exponent
        value = value.quantize(_MAX_DECIMALS)
    return value


@dataclass(frozen=True, slots=True)
class _Meter:
    settings: MeterSettings
    driver: MeterDriver
    owner: BusOwner


class MeterReader:
    """Reads the configured meters through their buses' owners."""

    def __init__(
        self,
        meters: Sequence[MeterSettings],
        owners: Mapping[str, BusOwner],
        record: Callable[[Reading], None],
        *,
        wall_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self._meters: dict[str, _Meter] = {}
        for settings in meters:
            owner = owners[settings.bus]
            owner.register(settings.id)
            self._meters[settings.id] = _Meter(settings, meter_driver(settings), owner)
        self._record = record
        self._wall_ms = wall_ms
        self.readings = 0
        """Readings recorded since start."""

    def buses(self) -> set[str]:
        """The buses that have meters (each needs a schedule task)."""
        return {meter.settings.bus for meter in self._meters.values()}

    async def read_now(self, meter_id: str, *, within_s: float = 30.0) -> Reading:
        """Read ``meter_id`` ahead of the schedule, record the reading and return it."""
        meter = self._meters.get(meter_id)
        if meter is None:
            raise UnknownDeviceError(meter_id)
        return await self._read(meter, Priority.ON_DEMAND, time.monotonic() + within_s)

    async def run(self, bus: str) -> None:
        """The schedule of every meter on ``bus`` (a supervised task)."""
        meters = [m for m in self._meters.values() if m.settings.bus == bus]
        now = time.monotonic()
        due: list[tuple[float, int, _Meter]] = []
        for index, meter in enumerate(meters):
            interval = meter.settings.interval_s
            # Continuous meters start in configuration order; the others spread over an interval.
            first = now if interval == 0 else now + random.uniform(0, interval)
            due.append((first, index, meter))
        heapq.heapify(due)
        changed = asyncio.Event()

        async with asyncio.TaskGroup() as group:
            while True:
                if not due:
                    changed.clear()
                    await changed.wait()
                    continue
                when, index, meter = due[0]
                delay = when - time.monotonic()
                if delay > 0:
                    changed.clear()
                    try:
                        async with asyncio.timeout(delay):
                            await changed.wait()
                    except TimeoutError:
                        pass
                    continue
                heapq.heappop(due)
                task = group.create_task(self._poll(meter, when))
                task.add_done_callback(
                    functools.partial(self._again, due, changed, when, index, meter)
                )

    @staticmethod
    def _again(
        due: list[tuple[float, int, _Meter]],
        changed: asyncio.Event,
        when: float,
        index: int,
        meter: _Meter,
        _task: object,
    ) -> None:
        # Fixed rate: due one interval after it was last due, or now if that is already past.
        interval = meter.settings.interval_s
        heapq.heappush(due, (max(when + interval, time.monotonic()), index, meter))
        changed.set()

    async def _poll(self, meter: _Meter, due: float) -> None:
        deadline = due + max(meter.settings.interval_s, _POLL_DEADLINE_MIN_S)
        # A failure is counted in the device's statistics; its offline transition is logged once.
        with contextlib.suppress(ExchangeError):
            await self._read(meter, Priority.POLL, deadline)

    async def _read(self, meter: _Meter, priority: Priority, deadline: float) -> Reading:
        settings, owner = meter.settings, meter.owner
        timeout_ms = settings.timeout_ms or owner.settings.timeout_ms
        plans = meter.driver.plan()
        futures = [
            owner.submit(
                Exchange(
                    device=settings.id,
                    request=plan.request.data,
                    decoder=plan.request.decoder,
                    accept=plan.request.accept,
                    timeout_s=timeout_ms / 1000.0,
                    retries=owner.settings.retries,
                    priority=priority,
                    reply=plan.request.reply,
                    deadline=deadline,
                )
            )
            for plan in plans
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        values: dict[str, Value] = {}
        first_error: ExchangeError | None = None
        for plan, result in zip(plans, results, strict=True):
            got = self._values(plan, result)
            if isinstance(got, ExchangeError):
                first_error = first_error or got
            else:
                values.update(got)
        # What the cloud cannot store exactly is not a reading: a float32 register holding NaN or
        # infinity is missing this time; more than 9 decimals are rounded (half-even) to 9.
        values = {
            name: wire for name, value in values.items() if (wire := _on_wire(value)) is not None
        }
        if not values:
            raise first_error or NoReplyError(owner.name, settings.id, "nothing was read")
        names = tuple(name for name in settings.values if name not in values)
        reading = Reading(
            settings.id, owner.name, values, self._wall_ms(), settings.effective_kind, names
        )
        self._record(reading)
        self.readings += 1
        return reading

    @staticmethod
    def _values(
        plan: ReadPlan, result: Outcome | BaseException
    ) -> Mapping[str, Value] | ExchangeError:
        if isinstance(result, ExchangeError):
            return result
        if isinstance(result, BaseException):
            raise result
        try:
            return plan.values(result.frame)
        except ExchangeError as exc:
            return exc
