"""The bus as a serial server: routing, silence, clients, lifecycle."""

from __future__ import annotations

import gc
import socket
import threading
import time
import warnings
from collections.abc import Callable

import pytest
import serial

from devices.serialbus import BusServer, Direction, run_bus
from tests.devices.serialbus.conftest import BusFactory
from tests.devices.serialbus.echo import (
    BROADCAST,
    EchoDevice,
    EchoFramer,
    Master,
    RaisingDevice,
    frame,
)

MakeMaster = Callable[[BusServer], Master]


def test_reply_comes_from_the_addressed_device_only(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    devices = [EchoDevice(1), EchoDevice(2), EchoDevice(3)]
    server = make_bus(devices)
    master = make_master(server)

    assert master.exchange(frame(2, b"hello")) == frame(0x82, b"hello")
    assert master.exchange(frame(3, b"x")) == frame(0x83, b"x")

    # Every device hears every request, as on a multi-drop line.
    assert [len(d.heard) for d in devices] == [2, 2, 2]
    stats = server.wait_for(lambda s: s.devices["echo:3"].replies == 1)
    assert stats.requests == 2
    assert stats.devices["echo:1"].requests == 0
    assert stats.devices["echo:2"].requests == 1
    assert stats.devices["echo:2"].replies == 1
    assert [i.device for i in stats.of(Direction.REQUEST)] == ["echo:2", "echo:3"]
    assert [i.device for i in stats.of(Direction.REPLY)] == ["echo:2", "echo:3"]
    assert server.url == f"socket://127.0.0.1:{server.port}"


def test_broadcast_and_absent_addresses_get_silence(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    devices = [EchoDevice(1), EchoDevice(2)]
    server = make_bus(devices)
    master = make_master(server)

    master.send(frame(BROADCAST, b"time") + frame(9, b"nobody"))
    # Replies come back in request order, so if either of those had been answered, its reply
    # would be the frame read here.
    assert master.exchange(frame(1, b"ping")) == frame(0x81, b"ping")
    assert all(d.heard[0] == frame(BROADCAST, b"time") for d in devices)
    stats = server.stats
    assert (stats.requests, stats.unanswered) == (3, 2)
    assert [i.device for i in stats.of(Direction.REQUEST)] == [None, None, "echo:1"]


def test_garbage_from_the_master_is_skipped_by_the_framer(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus()
    master = make_master(server)
    assert master.exchange(b"\x00\x55\x7e\x01\xf0" + frame(1, b"ok")) == frame(0x81, b"ok")
    assert server.stats.requests == 1


def test_pyserial_socket_url_client(make_bus: BusFactory) -> None:
    server = make_bus()
    port = serial.serial_for_url(server.url, baudrate=2400, parity=serial.PARITY_EVEN, timeout=5)
    try:
        request = frame(1, b"meter")
        port.write(request)
        reply = port.read(len(frame(0x81, b"meter")))
    finally:
        port.close()
    assert reply == frame(0x81, b"meter")


def test_a_new_connection_replaces_the_old_one(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    framer = EchoFramer()
    server = make_bus(framer=framer)
    first = make_master(server)
    assert first.exchange(frame(1, b"a")) == frame(0x81, b"a")
    first.send(frame(2, b"half a frame")[:5])  # left behind in the framer
    server.wait_for(lambda s: s.connections == 1)

    second = make_master(server)
    # The old master is hung up on: end of stream, not a timeout.
    assert first.read_some(time.monotonic() + 5.0) == b""
    assert second.exchange(frame(2, b"b")) == frame(0x82, b"b")
    assert server.stats.connections == 2
    assert framer.resets == 2  # one per connection: the half frame did not survive


def test_reconnecting_after_the_master_left(make_bus: BusFactory, make_master: MakeMaster) -> None:
    server = make_bus()
    first = make_master(server)
    assert first.exchange(frame(1, b"a")) == frame(0x81, b"a")
    first.close()
    again = make_master(server)
    assert again.exchange(frame(3, b"c")) == frame(0x83, b"c")


def test_two_devices_answering_at_once_garble_the_reply(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus([EchoDevice(1, label="twin:a"), EchoDevice(1, label="twin:b", pad=2)])
    master = make_master(server)
    master.send(frame(1, b"who"))
    stats = server.wait_for(lambda s: s.reply_collisions == 1)
    garbled = master.read_exact(len(frame(0x81, b"who\x00\x01")))
    assert garbled != frame(0x81, b"who\x00\x01")
    assert EchoFramer().feed(garbled) == []
    assert stats.of(Direction.REPLY)[0].device == "twin:a+twin:b"
    assert stats.devices["twin:a"].replies == stats.devices["twin:b"].replies == 1


def test_a_raising_device_is_counted_and_the_bus_carries_on(
    make_bus: BusFactory, make_master: MakeMaster
) -> None:
    server = make_bus([RaisingDevice(1), EchoDevice(2)])
    master = make_master(server)
    master.send(frame(1, b"boom"))
    assert master.exchange(frame(2, b"fine")) == frame(0x82, b"fine")
    # It raised on both requests (each device hears every request); the bus kept serving.
    assert server.stats.devices["echo:1"].errors == 2
    assert server.alive


def test_duplicate_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        BusServer(EchoFramer(), [EchoDevice(1), EchoDevice(1)])


def test_stop_closes_everything() -> None:
    threads_before = set(threading.enumerate())
    server = BusServer(EchoFramer(), [EchoDevice(1)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with server:
            master = Master(server.port)
            assert master.exchange(frame(1, b"x")) == frame(0x81, b"x")
        # The connected master sees the line go away.
        assert master.read_some(time.monotonic() + 5.0) == b""
        master.close()
        server.stop()  # a second stop is harmless
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert set(threading.enumerate()) == threads_before
    assert not server.alive
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5.0).close()
    with pytest.raises(RuntimeError, match="starts once"):
        server.start()


def test_run_bus_serves_until_stopped() -> None:
    stop = threading.Event()
    ready = threading.Event()
    servers: list[BusServer] = []

    def on_ready(server: BusServer) -> None:
        servers.append(server)
        ready.set()

    runner = threading.Thread(
        target=run_bus,
        args=(EchoFramer(), [EchoDevice(5)]),
        kwargs={"stop": stop, "ready": on_ready},
    )
    runner.start()
    try:
        assert ready.wait(5.0)
        master = Master(servers[0].port)
        try:
            assert master.exchange(frame(5, b"cli")) == frame(0x85, b"cli")
        finally:
            master.close()
    finally:
        stop.set()
        runner.join(5.0)
    assert not runner.is_alive()
    assert not servers[0].alive


def test_pty_line(make_bus: BusFactory) -> None:
    server = make_bus(pty=True, char_bits=10, baud=19200)
    assert server.url.startswith("/dev/")
    # 8N1: a pty drops even parity (FIELD-NOTES, Serial).
    port = serial.serial_for_url(server.url, baudrate=19200, timeout=5)
    try:
        port.write(frame(2, b"tty"))
        reply = port.read(len(frame(0x82, b"tty")))
    finally:
        port.close()
    assert reply == frame(0x82, b"tty")
    with pytest.raises(RuntimeError, match="no port"):
        _ = server.port
