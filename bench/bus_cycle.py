"""RS-485 poll cycle: 32 DL/T 645 meters on one line paced at 2400 8E1, read back to back.

The simulated line (:class:`devices.serialbus.BusServer` with ``pace=True``, 11 bits per byte)
runs in its own process, so the gateway's event loop and the simulator's pacing thread never share
a GIL: their scheduling jitter would otherwise be charged to the poll cycle. The gateway side is
the real thing — :class:`gateway.bus.BusOwner` on ``socket://``, the DL/T 645 driver, and
:class:`gateway.meters.MeterReader` with ``interval_s = 0`` (each meter queued again the moment its
read finished) — reading forward active energy (00010000) from every meter, cycle after cycle.

It prints, over the measured cycles (the first one is a warm-up):

* the poll-cycle time (median; a cycle ends when every meter has been read once more);
* the wire-time lower bound: the bytes actually exchanged in that cycle × 11 / 2400 — every byte
  the owner wrote (each request with the four FE wake-up bytes the standard tells masters to
  send) and received; and, stricter, the same bound over the ``68 … 16`` frames alone as the
  simulator logged them (no preamble), with its ratio;
* their ratio (the bar in DESIGN.md §8 is ≤ 1.15);
* where the rest went: the simulator's turnaround (request end → reply start, the meter's
  response delay), and what is left (the owner's inter-frame gap and software).

Usage: ``python bench/bus_cycle.py [--meters 32] [--cycles 4] [--baud 2400] [--turnaround-ms 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import statistics
import sys
import time
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.dlt645 import Dlt645Meter, RequestFramer
from devices.serialbus import BusServer, BusStats, Direction, run_bus
from gateway.bus import BusOwner
from gateway.drivers import bus_gap_s
from gateway.meters import MeterReader, Reading
from gateway.settings import BusSettings, MeterSettings

CHAR_BITS = 11


def plate(n: int) -> str:
    return f"{n:012d}"


def serve(conn: Connection, stop: MpEvent, meters: int, baud: int, turnaround_ms: float) -> None:
    """The simulator process: serve the line until ``stop``, then send back its statistics."""
    devices = [Dlt645Meter(plate(n), energy_kwh=Decimal(1000 + n)) for n in range(1, meters + 1)]
    servers: list[BusServer] = []

    def ready(server: BusServer) -> None:
        servers.append(server)
        conn.send(server.url)

    run_bus(
        RequestFramer(),
        devices,
        baud=baud,
        char_bits=CHAR_BITS,
        pace=True,
        turnaround_ms=turnaround_ms,
        stop=stop,
        ready=ready,
    )
    conn.send(servers[0].stats)


async def poll(
    url: str, meters: int, cycles: int, baud: int
) -> tuple[list[float], list[int], float]:
    """Read every meter ``cycles + 1`` times back to back; the end time of each cycle."""
    bus = BusSettings(name="bench", url=url, baud=baud, parity="E", timeout_ms=1000, retries=0)
    owner = BusOwner(bus, gap_s=bus_gap_s(bus, ["dlt645"]))
    settings = [
        MeterSettings(id=f"m{n}", bus="bench", address=plate(n), interval_s=0)
        for n in range(1, meters + 1)
    ]
    ends: list[float] = []
    sent: list[int] = [0]
    done = asyncio.Event()
    count = 0

    def record(reading: Reading) -> None:
        nonlocal count
        count += 1
        if count % meters == 0:
            ends.append(time.monotonic())
            sent.append(owner.bytes_sent + owner.bytes_received)
            if len(ends) == cycles + 1:
                done.set()

    reader = MeterReader(settings, {"bench": owner}, record)
    started = time.monotonic()
    tasks = [asyncio.create_task(owner.run()), asyncio.create_task(reader.run("bench"))]
    try:
        await done.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await owner.close()
    return [started, *ends], [b - a for a, b in itertools.pairwise(sent)], owner.gap_s


def analyse(stats: BusStats, bounds: list[float], exchanged: list[int], baud: int) -> None:
    byte_s = CHAR_BITS / baud
    cycles, wire, turnaround = [], [], []
    requests = stats.of(Direction.REQUEST)
    replies = stats.of(Direction.REPLY)
    for start, end in itertools.pairwise(bounds[1:]):
        # Requests sent within the cycle and their replies (each reply follows its request).
        sent = [r for r in requests if start <= r.start < end]
        answers = [r for r in replies if start <= r.start < end]
        cycles.append(end - start)
        wire.append(sum(r.size for r in sent + answers) * byte_s)
        turnaround.append(
            sum(a.start - q.end for q, a in zip(sent, answers, strict=False) if a.start >= q.end)
        )
    cycle, frames = statistics.median(cycles), statistics.median(wire)
    bound = statistics.median(exchanged[1:]) * byte_s
    print(f"cycles measured:        {len(cycles)} (after one warm-up cycle)")
    print(f"poll-cycle time:        {cycle * 1000:8.1f} ms (median; per cycle {_ms(cycles)})")
    print(f"wire-time lower bound:  {bound * 1000:8.1f} ms (bytes exchanged x 11 / {baud})")
    print(f"ratio:                  {cycle / bound:8.3f}   (target <= 1.15)")
    print(f"bound, frames only:     {frames * 1000:8.1f} ms (68..16 without the FE preamble)")
    print(f"ratio, frames only:     {cycle / frames:8.3f}")
    share = statistics.median(t / c for t, c in zip(turnaround, cycles, strict=True))
    rest = cycle - bound - statistics.median(turnaround)
    print(f"simulator turnaround:   {share * 100:8.1f} % of the cycle")
    print(f"gap + software:         {rest * 1000:8.1f} ms per cycle")
    print(f"overlaps on the wire:   {stats.overlaps}")


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.0f}" for v in values) + " ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=32)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--baud", type=int, default=2400)
    parser.add_argument("--turnaround-ms", type=float, default=5.0)
    args = parser.parse_args()

    context = mp.get_context("spawn")
    parent, child = context.Pipe()
    stop = context.Event()
    process = context.Process(
        target=serve,
        args=(child, stop, args.meters, args.baud, args.turnaround_ms),
        name="bus-simulator",
    )
    process.start()
    try:
        url = parent.recv()
        bounds, exchanged, gap_s = asyncio.run(poll(url, args.meters, args.cycles, args.baud))
    finally:
        stop.set()
    stats: BusStats = parent.recv()
    process.join(10)
    print(f"{args.meters} DL/T 645 meters, {args.baud} 8E1 paced, simulator in its own process")
    print(f"inter-frame gap:        {gap_s * 1000:8.2f} ms; turnaround {args.turnaround_ms} ms")
    analyse(stats, bounds, exchanged, args.baud)


if __name__ == "__main__":
    main()
