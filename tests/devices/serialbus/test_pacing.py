"""Pacing at the line rate, the half-duplex timing model, and overlap detection.

The lower bounds are exact consequences of the model (a byte is never released before its wire
time), so they are asserted strictly, as is the model itself (wire intervals of exactly the frame's
wire time, replies one turnaround after their request). How late bytes arrive is the scheduler's
doing: `bench/bus_pacing.py` measures it (docs/benchmarks.md), no test bounds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from devices.serialbus import BusServer, Direction, LineTiming
from tests.devices.serialbus.conftest import BusFactory
from tests.devices.serialbus.echo import EchoDevice, Master, frame

MakeMaster = Callable[[BusServer], Master]

TURNAROUND_S = 0.005
# A DL/T 645 energy read is 44 bytes on the wire; the echo frames of this size are 16 + 28 bytes.
REQUEST_DATA, PAD = bytes(12), 12
REQUEST_SIZE, REPLY_SIZE = 16, 28


def test_line_timing() -> None:
    assert LineTiming(2400).byte_time == pytest.approx(11 / 2400)
    assert LineTiming(19200, char_bits=10).wire_time(44) == pytest.approx(44 * 10 / 19200)
    with pytest.raises(ValueError, match="baud"):
        LineTiming(0)
    with pytest.raises(ValueError, match="char_bits"):
        LineTiming(9600, char_bits=20)


def test_a_44_byte_exchange_at_2400_8e1_takes_its_wire_time(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus([EchoDevice(1, pad=PAD)], pace=True, baud=2400, char_bits=11)
    master = make_master(server)
    byte_s = 11 / 2400
    request = frame(1, REQUEST_DATA)
    assert len(request) == REQUEST_SIZE

    started = time.perf_counter()
    master.send(request)
    arrivals: list[float] = []
    received = b""
    for _ in range(REPLY_SIZE):
        received += master.read_exact(1)
        arrivals.append(time.perf_counter() - started)
    elapsed = arrivals[-1]

    assert received == frame(0x81, REQUEST_DATA + bytes(range(PAD)))
    expected = (REQUEST_SIZE + REPLY_SIZE) * byte_s + TURNAROUND_S  # 206.7 ms
    assert elapsed >= expected, f"{elapsed * 1000:.2f} ms"
    # No byte of the reply before the request has finished on the wire, turned around, and the
    # byte itself has been transmitted: half duplex.
    for index, arrival in enumerate(arrivals):
        assert arrival >= (REQUEST_SIZE + index + 1) * byte_s + TURNAROUND_S

    request_wire, reply_wire = server.stats.intervals
    assert request_wire.direction is Direction.REQUEST
    assert request_wire.end - request_wire.start == pytest.approx(REQUEST_SIZE * byte_s)
    assert reply_wire.start - request_wire.end == pytest.approx(TURNAROUND_S)
    assert reply_wire.end - reply_wire.start == pytest.approx(REPLY_SIZE * byte_s)


def test_a_poll_cycle_is_scheduled_on_the_model(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    devices = [EchoDevice(n, pad=PAD) for n in range(1, 11)]
    server = make_bus(devices, pace=True, baud=9600, char_bits=11)
    master = make_master(server)
    byte_s = 11 / 9600
    started = time.perf_counter()
    for device in devices:
        reply = master.exchange(frame(device.number, REQUEST_DATA))
        assert reply[1] == device.number | 0x80
    elapsed = time.perf_counter() - started

    lower_bound = len(devices) * ((REQUEST_SIZE + REPLY_SIZE) * byte_s + TURNAROUND_S)
    assert elapsed >= lower_bound, f"ratio {elapsed / lower_bound:.4f}"
    stats = server.stats
    assert stats.overlaps == 0  # a master that waits for each reply never collides
    requests, replies = stats.of(Direction.REQUEST), stats.of(Direction.REPLY)
    assert len(requests) == len(replies) == len(devices)
    # Every reply is scheduled from its own request's end, not from the previous wake-up: the
    # model never drifts, whatever the scheduler did to earlier bytes.
    for request, answer in zip(requests, replies, strict=True):
        assert request.end - request.start == pytest.approx(REQUEST_SIZE * byte_s)
        assert answer.start - request.end == pytest.approx(TURNAROUND_S)
        assert answer.end - answer.start == pytest.approx(REPLY_SIZE * byte_s)
    for answer, following in zip(replies, requests[1:], strict=False):
        assert following.start >= answer.end  # the master spoke only after hearing the reply


def test_a_master_talking_over_a_reply_is_an_overlap(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus([EchoDevice(1, pad=PAD), EchoDevice(2)], pace=True)
    master = make_master(server)
    master.send(frame(1, REQUEST_DATA))
    master.read_exact(1)  # the reply is on the wire now...
    master.send(frame(2, b"rude"))  # ...and the master starts talking
    stats = server.wait_for(lambda s: len(s.of(Direction.REPLY)) == 2)
    assert stats.overlaps == 1
    ((earlier, later),) = stats.overlapping
    assert (earlier.direction, earlier.device) == (Direction.REPLY, "echo:1")
    assert (later.direction, later.device) == (Direction.REQUEST, "echo:2")
    # Replies never overlap each other: the second waits for the first to leave the wire.
    first, second = stats.of(Direction.REPLY)
    assert second.start >= first.end
    master.read_exact(REPLY_SIZE - 1 + len(frame(0x82, b"rude")))


def test_pipelined_requests_collide_with_the_first_reply(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus([EchoDevice(1), EchoDevice(2)], pace=True, baud=9600)
    master = make_master(server)
    # One write, two requests: the second is still on the wire when the first reply starts.
    master.send(frame(1, bytes(12)) + frame(2, bytes(12)))
    assert master.next_frame() == frame(0x81, bytes(12))
    assert master.next_frame() == frame(0x82, bytes(12))
    stats = server.stats
    assert stats.overlaps == 1
    first_request, second_request = stats.of(Direction.REQUEST)
    assert second_request.start == pytest.approx(first_request.end)  # back to back on the wire


def test_unpaced_replies_are_immediate_and_never_overlap(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus([EchoDevice(1, pad=PAD)], baud=300)  # 300 baud would take 1.6 s per exchange
    master = make_master(server)
    started = time.perf_counter()
    for _ in range(5):
        master.exchange(frame(1, REQUEST_DATA))
    assert time.perf_counter() - started < 5 * (REQUEST_SIZE + REPLY_SIZE) * 11 / 300
    stats = server.stats
    assert stats.overlaps == 0
    assert all(i.start == i.end for i in stats.intervals)
