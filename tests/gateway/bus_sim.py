"""Helpers for bus tests: simulated lines of DL/T 645 meters (and a lock board) on loopback.

``MixedFramer`` lets DL/T 645 meters and a Kerong lock board share one simulated line. The bus
simulator takes one request framer; this one feeds every byte to both families' framers and
returns what either completes. Real sites keep lock boards (19200 8N1) and DL/T 645 meters
(2400 8E1) on separate lines because their character frames differ; on a TCP-simulated line
parity does not exist, and the bus owner is protocol-neutral, so one line with both shows the
priority between a locker command and meter polls on a single owner (docs/rs485-buses.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal

from devices import dlt645, lockboard
from devices.serialbus import BusDevice, BusServer, WireInterval
from gateway.settings import BusSettings, MeterSettings

FAST_BAUD = 115_200


def plate(n: int) -> str:
    """The nameplate address of test meter ``n``."""
    return f"{n:012d}"


def make_meters(count: int, *, start: int = 1) -> list[dlt645.Dlt645Meter]:
    """``count`` simulated meters with distinct addresses and energy registers."""
    return [
        dlt645.Dlt645Meter(plate(n), energy_kwh=Decimal(1000 + n), preamble=2)
        for n in range(start, start + count)
    ]


class MixedFramer:
    """Request frames of DL/T 645 and of the lock board from one byte stream."""

    def __init__(self) -> None:
        self._meters = dlt645.RequestFramer()
        self._boards = lockboard.RequestFramer()

    def reset(self) -> None:
        """Forget partial frames (a new master connected)."""
        self._meters.reset()
        self._boards = lockboard.RequestFramer()

    def feed(self, data: bytes) -> list[bytes]:
        """Complete requests of either family, in the order they completed."""
        return [*self._meters.feed(data), *self._boards.feed(data)]


@contextmanager
def serve(
    devices: Sequence[BusDevice],
    *,
    mixed: bool = False,
    baud: int = FAST_BAUD,
    port: int = 0,
    seed: int = 7,
    turnaround_ms: float = 2.0,
) -> Iterator[BusServer]:
    """A paced simulated line with ``devices`` on it, stopped (crash re-raised) afterwards."""
    framer = MixedFramer() if mixed else dlt645.RequestFramer()
    server = BusServer(
        framer,
        devices,
        baud=baud,
        char_bits=11,
        pace=True,
        turnaround_ms=turnaround_ms,
        port=port,
        seed=seed,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def bus_settings(url: str, name: str = "line-a", **overrides: object) -> BusSettings:
    """A fast test bus on ``url`` (socket URLs ignore baud and parity)."""
    values: dict[str, object] = {
        "name": name,
        "url": url,
        "baud": FAST_BAUD,
        "timeout_ms": 150,
        "gap_ms": 3.0,
        "retries": 1,
        "offline_after": 2,
    }
    values.update(overrides)
    return BusSettings.model_validate(values)


def meter_settings(
    count: int, bus: str = "line-a", *, start: int = 1, **overrides: object
) -> list[MeterSettings]:
    """Settings for meters ``start..start+count-1`` (ids ``m<n>``) on ``bus``."""
    return [
        MeterSettings.model_validate(
            {"id": f"m{n}", "bus": bus, "address": plate(n), "interval_s": 0, **overrides}
        )
        for n in range(start, start + count)
    ]


def devices_in_wire_order(intervals: Sequence[WireInterval]) -> list[str | None]:
    """Who answered each request on the wire, in the order the requests went out."""
    requests = [i for i in intervals if i.direction.value == "request"]
    return [i.device for i in sorted(requests, key=lambda i: i.start)]
