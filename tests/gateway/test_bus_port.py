"""A port never leaves its socket behind, however the serial server goes away.

pyserial 3.5's ``socket://`` ``close()`` skips closing its socket when the ``shutdown()`` before it
fails, as it does once the server has reset the connection; and an ``open()`` that fails after
connecting leaves a half-open port that ``close()`` ignores. Either way the socket would only go
when the garbage collector finds it, with a ``ResourceWarning`` raised in whichever test is
running then. These tests collect at once and fail on any such warning.
"""

from __future__ import annotations

import gc
import socket
import struct
import warnings
from collections.abc import Iterator

import pytest
from serial.urlhandler import protocol_socket

from gateway.bus_errors import PortError
from gateway.bus_exchange import Exchange
from gateway.bus_port import Port


class _Decoder:
    checksum_errors = 0
    garbage_bytes = 0

    def feed(self, data: bytes) -> list[object]:
        return [data]

    def idle(self) -> list[object]:
        return []

    def reset(self) -> None:
        pass


# Nothing ever answers: an attempt ends only with the reset (long before the timeout).
EXCHANGE = Exchange("dev", b"ping", _Decoder, lambda frame: True, timeout_s=5.0)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(5.0)
        yield sock


@pytest.fixture
def no_leak() -> Iterator[None]:
    """Fail if a socket is reclaimed unclosed while the test runs (collected before the end)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []


def make_port(listener: socket.socket) -> Port:
    url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
    return Port("line", url, baud=9600, bytesize=8, parity="N", stopbits=1, char_bits=10)


def reset(conn: socket.socket) -> None:
    """Close ``conn`` with a TCP reset, as a serial server killed or restarted may."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.mark.usefixtures("no_leak")
def test_a_port_reset_by_the_server_is_closed_with_its_socket(listener: socket.socket) -> None:
    port = make_port(listener)
    port.open()
    conn, _ = listener.accept()
    reset(conn)
    # The write or the read meets the reset; the port closes (shutdown() fails: ENOTCONN).
    with pytest.raises(PortError):
        port.attempt(EXCHANGE, 0.0)
    assert not port.is_open


@pytest.mark.usefixtures("no_leak")
def test_an_open_that_fails_after_connecting_closes_its_socket(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    flush = protocol_socket.Serial.reset_input_buffer

    def reset_before_flushing(self: protocol_socket.Serial) -> None:
        conn, _ = listener.accept()
        reset(conn)
        flush(self)  # raises: ECONNRESET

    # open() connects, then flushes the input: the server resets the connection in between.
    monkeypatch.setattr(protocol_socket.Serial, "reset_input_buffer", reset_before_flushing)
    port = make_port(listener)
    with pytest.raises(PortError, match="cannot open"):
        port.open()
    assert not port.is_open


@pytest.mark.usefixtures("no_leak")
def test_a_closed_port_can_be_opened_again(listener: socket.socket) -> None:
    port = make_port(listener)
    port.open()
    first, _ = listener.accept()
    port.close()
    port.close()  # idempotent
    port.open()
    second, _ = listener.accept()
    assert first.recv(1) == b""  # the first connection was closed, not abandoned
    port.close()
    first.close()
    second.close()
