"""Fault injection: the fault table on a fake clock, and each fault as a master sees it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from devices.serialbus import BusServer, Fault
from devices.serialbus.faults import FaultTable
from tests.devices.serialbus.conftest import BusFactory
from tests.devices.serialbus.echo import EchoDevice, EchoFramer, Master, TrailerDevice, frame

MakeMaster = Callable[[BusServer], Master]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(clock: FakeClock) -> FaultTable:
    return FaultTable(["a", "b"], rng=random.Random(7), clock=clock)


def test_count_limits_a_fault_to_that_many_replies(table: FaultTable, clock: FakeClock) -> None:
    table.inject("a", Fault.NO_REPLY, count=2)
    plans = [table.apply("a", b"reply", clock.now, checksum_offset=-1) for _ in range(3)]
    assert [p.data for p in plans] == [b"", b"", b"reply"]
    assert [p.faults for p in plans] == [(Fault.NO_REPLY,), (Fault.NO_REPLY,), ()]
    assert table.active("a") == frozenset()


def test_duration_limits_a_fault_in_time(table: FaultTable, clock: FakeClock) -> None:
    table.inject("a", Fault.SLOW_REPLY, duration_s=2.0, delay_ms=250)
    assert table.apply("a", b"r", clock.now, checksum_offset=-1).delay_s == 0.25
    clock.now += 2.0
    assert table.apply("a", b"r", clock.now, checksum_offset=-1).delay_s == 0.0


def test_count_and_duration_end_at_whichever_comes_first(
    table: FaultTable, clock: FakeClock
) -> None:
    table.inject("a", Fault.BAD_CHECKSUM, count=5, duration_s=1.0)
    assert table.apply("a", b"\x01\x02", clock.now, checksum_offset=-1).data == b"\x01\xfd"
    clock.now += 1.5
    assert table.apply("a", b"\x01\x02", clock.now, checksum_offset=-1).data == b"\x01\x02"


def test_vanish_window(table: FaultTable, clock: FakeClock) -> None:
    table.inject("a", Fault.VANISH, duration_s=3.0)
    assert table.vanished_until("a", clock.now) == 103.0
    assert table.vanished_until("b", clock.now) is None
    clock.now += 3.0
    assert table.vanished_until("a", clock.now) is None


def test_faults_combine_and_clear(table: FaultTable, clock: FakeClock) -> None:
    table.inject("a", Fault.GARBAGE_BEFORE, garbage=b"<")
    table.inject("a", Fault.GARBAGE_AFTER, garbage=b">")
    table.inject("a", Fault.BAD_CHECKSUM, position=0)
    plan = table.apply("a", b"\x00ab", clock.now, checksum_offset=-1)
    assert plan.data == b"<\xffab>"
    assert set(plan.faults) == {Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER, Fault.BAD_CHECKSUM}
    table.clear("a", Fault.BAD_CHECKSUM)
    assert table.active("a") == {Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER}
    table.clear("a")
    assert table.apply("a", b"ab", clock.now, checksum_offset=-1).data == b"ab"


def test_no_reply_wins_over_the_other_faults(table: FaultTable, clock: FakeClock) -> None:
    table.inject("a", Fault.GARBAGE_AFTER, count=1)
    table.inject("a", Fault.NO_REPLY, count=1)
    assert table.apply("a", b"r", clock.now, checksum_offset=-1).faults == (Fault.NO_REPLY,)
    # The garbage was not consumed by a reply that never went out.
    assert table.apply("a", b"r", clock.now, checksum_offset=-1).faults == (Fault.GARBAGE_AFTER,)


@pytest.mark.parametrize(
    ("fault", "options", "message"),
    [
        (Fault.VANISH, {}, "VANISH"),
        (Fault.VANISH, {"duration_s": 1.0, "count": 1}, "VANISH"),
        (Fault.NO_REPLY, {"count": 0}, "count"),
        (Fault.NO_REPLY, {"duration_s": 0}, "duration_s"),
        (Fault.SLOW_REPLY, {"delay_ms": -1}, "delay_ms"),
    ],
)
def test_bad_injections_are_refused(
    table: FaultTable, fault: Fault, options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        table.inject("a", fault, **options)  # type: ignore[arg-type]


def test_unknown_address_is_refused(table: FaultTable) -> None:
    with pytest.raises(ValueError, match="no device 'z'"):
        table.inject("z", Fault.NO_REPLY)
    with pytest.raises(ValueError, match="no device 'z'"):
        table.clear("z")


# -- on a running bus ----------------------------------------------------------------------------


def test_no_reply(make_bus: BusFactory, make_master: MakeMaster) -> None:
    devices = [EchoDevice(1), EchoDevice(2)]
    server = make_bus(devices)
    master = make_master(server)
    server.inject("echo:1", Fault.NO_REPLY, count=1)
    master.send(frame(1, b"lost"))
    assert master.exchange(frame(2, b"next")) == frame(0x82, b"next")
    assert master.exchange(frame(1, b"back")) == frame(0x81, b"back")
    counters = server.stats.devices["echo:1"]
    assert (counters.requests, counters.replies, counters.faults) == (2, 1, 1)
    assert devices[0].heard[0] == frame(1, b"lost")  # it heard (and acted), only the reply was lost


def test_garbage_before_and_after(make_bus: BusFactory, make_master: MakeMaster) -> None:
    server = make_bus()
    master = make_master(server)
    reply = frame(0x81, b"data")
    server.inject("echo:1", Fault.GARBAGE_BEFORE, garbage=b"\x00\x68", count=1)
    server.inject("echo:1", Fault.GARBAGE_AFTER, garbage=b"\x16\xfe", count=1)
    master.send(frame(1, b"data"))
    assert master.read_exact(len(reply) + 4) == b"\x00\x68" + reply + b"\x16\xfe"
    assert server.stats.devices["echo:1"].faults == 2

    server.inject("echo:1", Fault.GARBAGE_BEFORE, count=1)  # random bytes
    master.send(frame(1, b"data"))
    stats = server.wait_for(lambda s: s.devices["echo:1"].replies == 2)
    sent = stats.intervals[-1].size
    assert len(reply) < sent <= len(reply) + 8
    assert master.read_exact(sent).endswith(reply)


def test_garbage_inside_is_caught_by_the_checksum(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus(seed=1)
    master = make_master(server)
    good = frame(0x81, b"0123456789")
    for _ in range(20):
        server.inject("echo:1", Fault.GARBAGE_INSIDE, count=1)
        master.send(frame(1, b"0123456789"))
        bad = master.read_exact(len(good))
        flipped = [i for i in range(len(good)) if good[i] != bad[i]]
        assert len(flipped) == 1
        assert len(good) // 4 <= flipped[0] < len(good) - len(good) // 4
        assert bin(good[flipped[0]] ^ bad[flipped[0]]).count("1") == 1
        assert EchoFramer().feed(bad) == []


def test_bad_checksum_alters_the_checksum_byte(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus([EchoDevice(1), TrailerDevice(2)])
    master = make_master(server)
    server.inject("echo:1", Fault.BAD_CHECKSUM, count=1)
    server.inject("echo:2", Fault.BAD_CHECKSUM, count=1)

    plain = frame(0x81, b"sum")
    master.send(frame(1, b"sum"))
    bad = master.read_exact(len(plain))
    assert bad[:-1] == plain[:-1]
    assert bad[-1] != plain[-1]

    # A device with checksum_offset = -2 (its frames end "CS 16") gets its CS altered, not the 16.
    trailer = frame(0x82, b"sum") + b"\x16"
    master.send(frame(2, b"sum"))
    bad = master.read_exact(len(trailer))
    assert bad[-1] == 0x16
    assert bad[:-2] == trailer[:-2]
    assert bad[-2] != trailer[-2]


def test_slow_reply(make_bus: BusFactory, make_master: MakeMaster) -> None:
    server = make_bus()
    master = make_master(server)
    server.inject("echo:3", Fault.SLOW_REPLY, delay_ms=150, count=1)
    started = time.monotonic()
    assert master.exchange(frame(3, b"zz")) == frame(0x83, b"zz")
    assert time.monotonic() - started >= 0.150
    # The second reply is on time: the recorded interval starts where its request ended.
    master.exchange(frame(3, b"zz"))
    request, reply = server.stats.intervals[-2:]
    assert reply.start == request.end


def test_vanish_and_come_back(make_bus: BusFactory, make_master: MakeMaster) -> None:
    devices = [EchoDevice(1), EchoDevice(2)]
    server = make_bus(devices)
    master = make_master(server)
    server.inject("echo:1", Fault.VANISH, duration_s=0.3)
    vanished_at = time.monotonic()

    master.send(frame(1, b"anyone?"))
    assert master.exchange(frame(2, b"still")) == frame(0x82, b"still")
    assert devices[0].heard == []  # gone: it did not even hear the request

    # Poll it as a gateway would, until it answers again (or the deadline fails the test).
    deadline = time.monotonic() + 5.0
    while True:
        master.send(frame(1, b"poll"))
        master.send(frame(2, b"sync"))
        first = master.next_frame()
        if first == frame(0x81, b"poll"):
            break
        assert first == frame(0x82, b"sync")
        assert time.monotonic() < deadline, "the device never came back"
        time.sleep(0.02)  # the poll interval of this little master, not a wait for the outcome
    assert time.monotonic() - vanished_at >= 0.3
    assert master.next_frame() == frame(0x82, b"sync")
    assert server.stats.devices["echo:1"].faults == 1  # one vanish window


def test_garbage_on_idle(make_bus: BusFactory, make_master: MakeMaster) -> None:
    server = make_bus()
    master = make_master(server)
    server.garbage_on_idle(b"\x55\x7e\xaa", after_s=0.02)
    # An idle line gets one burst per gap...
    assert master.read_exact(3) == b"\x55\x7e\xaa"
    # ...the framer hunts past it, and the next gap gets its own burst.
    assert master.exchange(frame(2, b"q")) == frame(0x82, b"q")
    assert master.read_exact(3) == b"\x55\x7e\xaa"
    server.garbage_on_idle(b"")
    assert master.exchange(frame(2, b"q")) == frame(0x82, b"q")
    noise = [i for i in server.stats.intervals if i.direction.value == "noise"]
    assert len(noise) == 2
