"""The master's end of the simulated line: a TCP connection or a pseudo-terminal.

Both are non-blocking file descriptors the bus thread multiplexes with :mod:`selectors`; this module
hides the difference (``recv``/``send`` on a socket, ``read``/``write`` on a pty master) behind one
small interface, so the bus logic never branches on the transport.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tty
from typing import Protocol

__all__ = ["MasterLink", "PtyMaster", "TcpMaster"]

_READ_SIZE = 4096


class MasterLink(Protocol):
    """A non-blocking byte pipe to the bus master."""

    def fileno(self) -> int:
        """The descriptor to watch for readiness."""
        ...

    def read(self) -> bytes | None:
        """Bytes the master sent (``b""`` if none were ready); ``None`` once the link is gone."""
        ...

    def write(self, data: bytes | bytearray) -> int:
        """Write what fits without blocking; return how many bytes went. Raises ``OSError``."""
        ...

    def close(self) -> None:
        """Release the descriptor(s)."""
        ...


class TcpMaster:
    """A master connected over TCP, as to an RS-485-to-Ethernet server."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        # Paced replies go out a byte or two at a time; Nagle's algorithm would hold them back
        # until the previous segment is acknowledged and wreck the timing.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self._sock.fileno()

    def read(self) -> bytes | None:
        """Bytes from the master, ``b""`` if none yet, ``None`` when it disconnected."""
        try:
            data = self._sock.recv(_READ_SIZE)
        except BlockingIOError:
            return b""
        except ConnectionError:
            return None
        return data or None

    def write(self, data: bytes | bytearray) -> int:
        """Send what the socket buffer takes now."""
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()


class PtyMaster:
    """The master side of a pseudo-terminal; the bus master opens :attr:`path` as a serial port.

    A pty ignores the baud rate and silently drops even parity (FIELD-NOTES, Serial), so masters
    open it 8N1 and the bus paces itself. We keep our own descriptor of the slave side open: without
    it, reads on the master fail with ``EIO`` whenever the serial master has the port closed.
    """

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        self._closed = False
        try:
            # Raw mode: no echo of what we write back to us, no line editing, no CR/LF mapping —
            # the bytes of a frame must pass through unchanged even before the master opens it.
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.path = os.ttyname(self._slave)
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        """The pty master's descriptor."""
        return self._master

    def read(self) -> bytes | None:
        """Bytes the serial master wrote to the pty (``b""`` if none are ready)."""
        try:
            return os.read(self._master, _READ_SIZE)
        except BlockingIOError:
            return b""

    def write(self, data: bytes | bytearray) -> int:
        """Write what the pty buffer takes now."""
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        """Close both sides we hold (once: the numbers may be reused afterwards)."""
        if self._closed:
            return
        self._closed = True
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
