"""The bus owner and the DL/T 645 and lock-board drivers against simulated lines on loopback.

Every test talks to a real :class:`devices.serialbus.BusServer` through ``socket://`` with the
bytes paced at the line rate, so "no two requests overlap" is checked against the simulator's
model of the wire, not against our own bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest

from devices.lockboard import LockBoard
from devices.serialbus import Fault
from gateway.bus_errors import BusClosedError, NoReplyError
from gateway.bus_exchange import Exchange
from gateway.drivers import Dlt645Driver
from gateway.lockers import Lockers
from gateway.settings import LockBoardSettings
from tests.gateway.bus_line import WAIT_S, Line, wait_stats
from tests.gateway.bus_sim import (
    bus_settings,
    devices_in_wire_order,
    make_meters,
    meter_settings,
    plate,
    serve,
)


async def test_a_meter_is_read_with_decimal_values_and_counted(
    lines: Callable[..., Line],
) -> None:
    with serve(make_meters(3)) as server:
        line = lines(bus_settings(server.url))
        reader = line.reader(meter_settings(3, values=("energy_kwh", "voltage_v", "relay")))

        reading = await reader.read_now("m2")

        assert reading.values == {
            "energy_kwh": Decimal("1002.00"),
            "voltage_v": Decimal("220.0"),
            "relay": "closed",
        }
        assert reading.event_data()["values"] == {
            "energy_kwh": "1002.00",
            "voltage_v": "220.0",
            "relay": "closed",
        }
        assert line.readings == [reading]
        stats = line.owner.device("m2")
        assert (stats.requests, stats.replies, stats.timeouts) == (3, 3, 0)
        assert stats.online is True
        assert stats.latency_ewma_ms is not None
        assert stats.latency_ewma_ms > 0
        assert line.owner.device("m1").requests == 0
        assert line.transitions == [("m2", True)]
        assert server.stats.overlaps == 0


async def test_garbage_and_bad_checksums_are_hunted_through(lines: Callable[..., Line]) -> None:
    with serve(make_meters(2)) as server:
        line = lines(bus_settings(server.url, retries=2))
        reader = line.reader(meter_settings(2))
        noisy = plate(1)
        readings = []
        for fault in (Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER, Fault.GARBAGE_INSIDE):
            server.inject(noisy, fault, count=1, garbage=b"\x68\x16\xfe\x68\x00")
            readings.append(await reader.read_now("m1"))
        server.inject(noisy, Fault.BAD_CHECKSUM, count=1)
        readings.append(await reader.read_now("m1"))

        assert [r.values["energy_kwh"] for r in readings] == [Decimal("1001.00")] * 4
        stats = line.owner.device("m1")
        assert stats.checksum_errors >= 2  # the flipped bit inside, the altered checksum
        assert stats.garbage_bytes > 0
        assert stats.timeouts == 2  # the two damaged replies cost one retry each
        assert stats.failures == 0
        assert server.stats.overlaps == 0


async def test_a_locker_open_goes_ahead_of_queued_polls(lines: Callable[..., Line]) -> None:
    board = LockBoard(0)
    with serve([*make_meters(10), board], mixed=True) as server:
        line = lines(bus_settings(server.url))
        owner = line.owner
        drivers = [Dlt645Driver(m) for m in meter_settings(10)]
        polls = []
        for driver in drivers:
            (plan,) = driver.plan()
            request = plan.request
            polls.append(
                owner.submit(
                    Exchange(driver.device, request.data, request.decoder, request.accept, 0.15)
                )
            )
        await wait_stats(server, lambda s: s.requests >= 1)
        lockers = Lockers(
            [LockBoardSettings(id="bank-a", bus="line-a", board=0)], {"line-a": owner}
        )

        state = await lockers.open("bank-a", 3)
        await asyncio.gather(*polls)

        assert state.opened
        assert not board.compartment(3).hook_closed
        order = devices_in_wire_order(server.stats.intervals)
        first_lock = order.index(board.address)
        # The poll on the wire when the open arrived finishes; the open and its read-back follow.
        assert first_lock <= 2
        assert order[first_lock : first_lock + 2] == [board.address, board.address]
        assert len(order) == 12
        assert sum(1 for d in order[first_lock:] if d != board.address) >= 8
        assert server.stats.overlaps == 0


async def test_a_jammed_lock_reads_back_closed(lines: Callable[..., Line]) -> None:
    board = LockBoard(2, answers_open=False)
    board.jam(5)
    with serve([board], mixed=True) as server:
        line = lines(bus_settings(server.url))
        lockers = Lockers(
            [LockBoardSettings(id="b", bus="line-a", board=2)], {"line-a": line.owner}
        )

        state = await lockers.open("b", 5)

        assert not state.opened
        assert line.owner.device("b").timeouts == 0  # silence after 31H is allowed


async def test_a_silent_meter_goes_offline_and_back_online_once(
    lines: Callable[..., Line],
) -> None:
    with serve(make_meters(3)) as server:
        # Generous timeout: a healthy meter must never miss (GC pauses on a loaded box).
        line = lines(bus_settings(server.url, timeout_ms=300, retries=0))
        reader = line.reader(meter_settings(3))
        schedule = asyncio.create_task(reader.run("line-a"))
        try:
            await wait_stats(server, lambda s: s.devices[plate(2)].replies >= 2)
            server.inject(plate(2), Fault.VANISH, duration_s=3.0)
            async with asyncio.timeout(WAIT_S):
                while ("m2", False) not in line.transitions:
                    await wait_stats(server, lambda s, n=server.stats.requests: s.requests > n)
                assert line.owner.device("m2").online is False
                while line.transitions.count(("m2", True)) < 2:
                    await wait_stats(server, lambda s, n=server.stats.requests: s.requests > n)
        finally:
            schedule.cancel()
            with pytest.raises(asyncio.CancelledError):
                await schedule

        mine = [online for device, online in line.transitions if device == "m2"]
        assert mine == [True, False, True]
        assert line.owner.device("m2").online is True
        assert line.owner.device("m2").failures >= 2
        assert all(line.owner.device(m).failures == 0 for m in ("m1", "m3"))
        assert server.stats.overlaps == 0


async def test_the_port_is_reopened_when_the_line_comes_back(lines: Callable[..., Line]) -> None:
    with serve(make_meters(1)) as server:
        port = server.port
        line = lines(bus_settings(server.url))
        reader = line.reader(meter_settings(1))
        assert (await reader.read_now("m1")).values["energy_kwh"] == Decimal("1001.00")
    # The serial server is gone; a read waits in the queue while the owner retries the port.
    pending = asyncio.create_task(reader.read_now("m1"))
    await asyncio.wait_for(line.owner.wait_port(False), WAIT_S)
    with serve(make_meters(1), port=port) as again:
        reading = await asyncio.wait_for(pending, WAIT_S)
        assert reading.values["energy_kwh"] == Decimal("1001.00")
        assert line.owner.port_up is True
        assert line.owner.reopens == 1
        assert again.stats.connections == 1


async def test_closing_fails_what_waits(lines: Callable[..., Line]) -> None:
    with serve(make_meters(1)) as server:
        line = lines(bus_settings(server.url))
        server.inject(plate(1), Fault.NO_REPLY)
        reader = line.reader(meter_settings(1))
        with pytest.raises(NoReplyError):
            await reader.read_now("m1")
        waiting = asyncio.create_task(reader.read_now("m1"))
        await wait_stats(server, lambda s: s.requests >= 3)
        await line.stop()
        with pytest.raises(BusClosedError):
            await waiting
        with pytest.raises(BusClosedError):
            await reader.read_now("m1")
