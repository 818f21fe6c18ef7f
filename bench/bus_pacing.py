"""How precisely the paced RS-485 simulator releases bytes: the wall clock against its own model.

The simulator (:class:`devices.serialbus.BusServer` with ``pace=True``) gives every frame a wire
interval and releases byte ``i`` of a reply at ``start + (i + 1) × byte time``. The tests check
the model (no byte ever early, intervals of exactly the frame's wire time, replies one turnaround
after their request); how *late* bytes arrive is the scheduler's doing, so it is measured here and
never asserted. Ten DL/T 645 meters on one line; a master in this process reads forward active
energy from each in turn, byte by byte, and compares each byte's arrival (``time.monotonic``, the
clock the simulator schedules on) with the time the model gives it.

It prints, per baud rate:

* each reply byte's lateness (arrival − model time): median, p99, worst, also in byte times;
* the cycle of ten exchanges against its wire-time lower bound (request + reply bytes at the line
  rate + one turnaround each): the ratio the earlier timed test bounded at 1.05.

Usage: ``python bench/bus_pacing.py [--meters 10] [--cycles 20] [--bauds 2400,9600]``
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.dlt645 import Address, Dlt645Meter, ReadRequest, RequestFramer, encode
from devices.serialbus import BusServer, Direction

CHAR_BITS = 11
TURNAROUND_S = 0.005
ENERGY = 0x00010000


def plate(n: int) -> str:
    return f"{n:012d}"


def exchange(sock: socket.socket, request: bytes, reply_size: int) -> list[float]:
    """Send ``request``; the arrival time of each of the ``reply_size`` reply bytes."""
    sock.sendall(request)
    arrivals: list[float] = []
    while len(arrivals) < reply_size:
        chunk = sock.recv(reply_size - len(arrivals))
        if not chunk:
            raise ConnectionError("the simulator closed the line")
        now = time.monotonic()
        arrivals.extend([now] * len(chunk))
    return arrivals


def measure(meters: int, cycles: int, baud: int) -> None:
    byte_s = CHAR_BITS / baud
    devices = [Dlt645Meter(plate(n), energy_kwh=Decimal(1000 + n)) for n in range(1, meters + 1)]
    server = BusServer(
        RequestFramer(),
        devices,
        baud=baud,
        char_bits=CHAR_BITS,
        pace=True,
        turnaround_ms=TURNAROUND_S * 1000,
    )
    server.start()
    requests = [encode(ReadRequest(Address(plate(n)), ENERGY)) for n in range(1, meters + 1)]
    lateness: list[float] = []
    ratios: list[float] = []
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reply_size = _reply_size(sock, requests[0])
            for _ in range(cycles):
                before = len(server.stats.of(Direction.REPLY))
                started = time.monotonic()
                arrivals = [exchange(sock, r, reply_size) for r in requests]
                elapsed = arrivals[-1][-1] - started
                wire = sum(len(r) + reply_size for r in requests) * byte_s
                ratios.append(elapsed / (wire + meters * TURNAROUND_S))
                replies = server.stats.of(Direction.REPLY)[before:]
                for interval, times in zip(replies, arrivals, strict=True):
                    due = [interval.start + (i + 1) * byte_s for i in range(len(times))]
                    lateness += [t - d for t, d in zip(times, due, strict=True)]
    finally:
        server.stop()
    lateness.sort()
    p50, p99, worst = statistics.median(lateness), lateness[int(len(lateness) * 0.99)], lateness[-1]
    print(f"{baud} 8E1, byte time {byte_s * 1000:.3f} ms, {len(lateness)} reply bytes")
    print(
        f"  byte lateness:   p50 {p50 * 1000:6.3f} ms  p99 {p99 * 1000:6.3f} ms  worst"
        f" {worst * 1000:6.3f} ms  (p99 = {p99 / byte_s:.2f} byte times)"
    )
    early = sum(1 for x in lateness if x < 0)
    print(f"  earliest byte:   {lateness[0] * 1000:+.3f} ms against the model; {early} early")
    print(
        f"  cycle / bound:   median {statistics.median(ratios):.4f}  worst {max(ratios):.4f}"
        f"  ({meters} exchanges, {cycles} cycles)"
    )


def _reply_size(sock: socket.socket, request: bytes) -> int:
    """One exchange to learn the reply's size (the first byte's arrival starts nothing)."""
    sock.sendall(request)
    data = b""
    while len(data) < 10 or len(data) < 12 + data[9]:  # 68 A0..A5 68 C L data CS 16
        data += sock.recv(256)
    return len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--bauds", default="2400,9600")
    args = parser.parse_args()
    for baud in (int(b) for b in args.bauds.split(",")):
        measure(args.meters, args.cycles, baud)


if __name__ == "__main__":
    main()
