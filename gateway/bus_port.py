"""The blocking side of a bus: one serial port and the attempts made on it.

Everything here runs on the bus's single worker thread (see :mod:`gateway.bus`) and nowhere else,
so the port needs no lock. pyserial is a blocking library; running it on the event loop would
stall every door and every other bus for the length of each reply.

Three rules of a half-duplex line live here:

* **Quiet before talking.** Before each request the line must have been idle for the gap: bytes
  still arriving (the tail of a late reply, garbage after a frame) are read, counted as stray and
  restart the wait. A request written into a device's transmission would garble both.
* **Our own bytes take time.** On an RS-485-to-Ethernet server (``socket://``) a write returns
  before the bytes are on the wire, so the end of our transmission is estimated from the line
  rate and the reply timeout starts there, as it does on a local UART after ``flush``.
* **Hunt until the deadline.** Received bytes go through the exchange's decoder, which skips
  garbage; reading goes on until a frame the exchange accepts arrives or the deadline passes.
  A timeout gives the decoder a last ``idle`` look, then ``reset``.

pyserial's ``SerialException`` and ``OSError`` are turned into :class:`PortError` here; the port
is then closed, and the owner reopens it. Closing never leaves a descriptor behind, on any path:
pyserial's ``socket://`` (and ``rfc2217://``) ``close()`` skips closing its socket when the
``shutdown()`` before it fails, which it does whenever the serial server reset the connection
(a write after the server went away), and ``open()`` can fail after connecting; see
:func:`_close_serial`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Final

import serial

from gateway.bus_errors import PortError
from gateway.bus_exchange import Attempt, Exchange, ReplyMode

__all__ = ["POLL_S", "Port"]

POLL_S: Final = 0.002
"""The port's read timeout: how long one read may block with nothing arriving. It bounds how late
a deadline or the end of a quiet gap is noticed, and is set once at open (never reconfigured)."""

_READ_MAX: Final = 4096


def _close_serial(port: serial.SerialBase) -> None:
    """Close ``port`` and whatever socket it holds, even where pyserial's ``close()`` does not.

    pyserial 3.5's ``socket://`` and ``rfc2217://`` handlers run ``shutdown(); close()`` on their
    socket under one bare ``except`` and then drop it: when ``shutdown()`` fails (``ENOTCONN``
    after the server reset the connection) the socket is never closed, and is only reclaimed,
    with a ``ResourceWarning``, whenever the garbage collector gets to it (in whatever test or
    task is running then). The same happens to a port whose ``open()`` failed after connecting.
    """
    sock = getattr(port, "_socket", None)  # the handlers' private attribute; None for a UART
    try:
        with contextlib.suppress(serial.SerialException, OSError):
            port.close()
    finally:
        if isinstance(sock, socket.socket):
            sock.close()  # idempotent: harmless when pyserial did close it


class Port:
    """One serial port, opened by URL with fixed line settings; used by one thread only."""

    def __init__(
        self,
        bus: str,
        url: str,
        *,
        baud: int,
        bytesize: int,
        parity: str,
        stopbits: int,
        char_bits: int,
    ) -> None:
        self.bus = bus
        self.url = url
        self._settings = {
            "baudrate": baud,
            "bytesize": bytesize,
            "parity": parity,
            "stopbits": stopbits,
        }
        self.char_s = char_bits / baud
        """Seconds one character occupies the line."""
        self._serial: serial.SerialBase | None = None
        self._busy_until = 0.0  # when the line was last seen or known busy (monotonic)
        self.stray_bytes = 0
        """Bytes that arrived outside any attempt (late replies, noise in idle gaps)."""

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._serial is not None

    def open(self) -> None:
        """Open the port; raises :class:`PortError`."""
        if self._serial is not None:
            return
        try:
            # All settings before open: a pty rejects any later termios change (FIELD-NOTES,
            # Serial). Opened separately so that the instance is ours even when open() fails.
            port = serial.serial_for_url(
                self.url, do_not_open=True, timeout=POLL_S, **self._settings
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(self.bus, f"cannot open {self.url}: {exc}") from exc
        # open() may fail after connecting (a server resetting the connection while the input is
        # flushed): the half-open port still holds its socket, closed here on every path.
        try:
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            _close_serial(port)
            raise PortError(self.bus, f"cannot open {self.url}: {exc}") from exc
        except BaseException:
            _close_serial(port)
            raise
        self._serial = port
        self._busy_until = time.monotonic()

    def close(self) -> None:
        """Close the port (idempotent; errors while closing a broken port do not matter)."""
        port, self._serial = self._serial, None
        if port is not None:
            _close_serial(port)

    def attempt(self, exchange: Exchange, gap_s: float) -> Attempt:
        """Carry out one attempt of ``exchange``: quiet line, write, hunt for the reply."""
        try:
            return self._attempt(exchange, gap_s)
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise PortError(self.bus, f"{self.url} failed: {exc}") from exc

    # -- internals -----------------------------------------------------------------------------

    def _port(self) -> serial.SerialBase:
        if self._serial is None:
            raise PortError(self.bus, "the port is not open")
        return self._serial

    def _read(self, port: serial.SerialBase) -> bytes:
        # read(1) returns as soon as one byte is there (or after POLL_S); the rest of what has
        # arrived is then taken without blocking.
        first = bytes(port.read(1))
        if not first:
            return b""
        waiting = int(port.in_waiting)
        return first + bytes(port.read(min(waiting, _READ_MAX))) if waiting else first

    def _wait_quiet(self, port: serial.SerialBase, gap_s: float) -> None:
        while True:
            remaining = self._busy_until + gap_s - time.monotonic()
            if remaining <= 0:
                return
            if port.in_waiting:
                data = self._read(port)
                self.stray_bytes += len(data)
                self._busy_until = time.monotonic()
            else:
                # Anything that arrives meanwhile waits in the OS buffer and is seen next round.
                time.sleep(min(remaining, POLL_S))

    def _attempt(self, exchange: Exchange, gap_s: float) -> Attempt:
        port = self._port()
        self._wait_quiet(port, gap_s)
        started = time.monotonic()
        port.write(exchange.request)
        port.flush()
        # A serial server acknowledges the write long before the last byte is on the wire.
        sent = max(time.monotonic(), started + len(exchange.request) * self.char_s)
        self._busy_until = sent
        if exchange.reply is ReplyMode.NONE:
            return Attempt(None, sent - started, 0, 0, 0, len(exchange.request), 0)
        decoder = exchange.decoder()
        deadline = sent + exchange.timeout_s
        received = other = 0
        accepted: object | None = None
        while True:
            data = self._read(port)
            now = time.monotonic()
            frames: list[object] = []
            if data:
                received += len(data)
                self._busy_until = now
                frames = decoder.feed(data)
            # Checked even while bytes flow: a chattering line must not hold the bus forever.
            timed_out = now >= deadline
            if timed_out:
                frames += decoder.idle()
            for frame in frames:
                if accepted is None and exchange.accept(frame):
                    accepted = frame
                else:
                    other += 1
            if accepted is not None:
                break
            if timed_out:
                decoder.reset()
                break
        latency = time.monotonic() - started
        return Attempt(
            accepted,
            latency,
            decoder.checksum_errors,
            decoder.garbage_bytes,
            other,
            len(exchange.request),
            received,
        )
