"""A tiny protocol for testing the bus on its own: frames ``7E ADDR LEN DATA… SUM``.

``SUM`` is the sum of ADDR, LEN and DATA modulo 256. A device numbered ``n`` answers requests to
``n`` with ``7E n|80 LEN DATA… SUM``, its data being the request's plus ``pad`` bytes, and stays
silent otherwise; ``FF`` is the broadcast address (every device hears it, none answers).
The test master talks to the bus over a raw socket and decodes replies with the same framer.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

STX = 0x7E
BROADCAST = 0xFF
_MAX_DATA = 64


def frame(address: int, data: bytes) -> bytes:
    """Encode one echo frame."""
    body = bytes([address, len(data)]) + data
    return bytes([STX]) + body + bytes([sum(body) & 0xFF])


class EchoFramer:
    """Cuts echo frames out of a byte stream, hunting past garbage and bad sums."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.resets = 0

    def reset(self) -> None:
        """Forget half a frame (a new master connected)."""
        self.buffer.clear()
        self.resets += 1

    def feed(self, data: bytes) -> list[bytes]:
        """Return every complete, valid frame now in the buffer."""
        self.buffer += data
        frames: list[bytes] = []
        while True:
            start = self.buffer.find(STX)
            if start < 0:
                self.buffer.clear()
                return frames
            del self.buffer[:start]
            if len(self.buffer) < 3:
                return frames
            size = self.buffer[2]
            if size > _MAX_DATA:
                del self.buffer[:1]
                continue
            if len(self.buffer) < size + 4:
                return frames
            candidate = bytes(self.buffer[: size + 4])
            if sum(candidate[1:-1]) & 0xFF == candidate[-1]:
                frames.append(candidate)
                del self.buffer[: size + 4]
            else:
                del self.buffer[:1]  # a bad sum: the 7E was noise, hunt for the next one


@dataclass
class EchoDevice:
    """Device ``number`` on the echo bus; remembers every request it heard."""

    number: int
    pad: int = 0
    label: str | None = None
    heard: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> str:
        """``echo:N`` unless a label was given."""
        return self.label or f"echo:{self.number}"

    def respond(self, request: bytes, now: float) -> bytes | None:
        """Echo requests addressed to us, with ``pad`` extra bytes."""
        self.heard.append(request)
        if request[1] != self.number:
            return None
        data = request[3:-1] + bytes(range(self.pad))
        return frame(self.number | 0x80, data)


@dataclass
class TrailerDevice(EchoDevice):
    """An echo device whose frames end with a constant ``16`` after the sum, as DL/T 645's do."""

    checksum_offset: int = -2

    def respond(self, request: bytes, now: float) -> bytes | None:
        """The echo reply plus the trailer byte."""
        reply = super().respond(request, now)
        return None if reply is None else reply + b"\x16"


class RaisingDevice(EchoDevice):
    """A buggy simulator: raises on every request."""

    def respond(self, request: bytes, now: float) -> bytes | None:
        """Fail."""
        raise RuntimeError("simulator bug")


class Master:
    """A bus master on a raw TCP socket, with deadlines on every read."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = EchoFramer()
        self.raw = bytearray()
        self.frames: list[bytes] = []

    def close(self) -> None:
        """Disconnect."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Write bytes to the line."""
        self.sock.sendall(data)

    def read_some(self, deadline: float) -> bytes:
        """Whatever arrives next (``b""`` on end of stream); ``TimeoutError`` at the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing arrived before the deadline")
        self.sock.settimeout(remaining)
        data = self.sock.recv(4096)
        self.raw += data
        return data

    def read_exact(self, size: int, timeout: float = 5.0) -> bytes:
        """Exactly ``size`` bytes from the line."""
        deadline = time.monotonic() + timeout
        while len(self.raw) < size:
            if not self.read_some(deadline):
                raise ConnectionError("the bus closed the connection")
        data = bytes(self.raw[:size])
        del self.raw[:size]
        return data

    def next_frame(self, timeout: float = 5.0) -> bytes:
        """The next valid frame, hunting past anything else."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            self.frames += self.framer.feed(bytes(self.raw))
            self.raw.clear()
            if not self.frames and not self.read_some(deadline):
                raise ConnectionError("the bus closed the connection")
        return self.frames.pop(0)

    def exchange(self, request: bytes, timeout: float = 5.0) -> bytes:
        """Send a request, return the next valid frame."""
        self.send(request)
        return self.next_frame(timeout)
