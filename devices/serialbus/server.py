"""A simulated multi-drop RS-485 line, served like an RS-485-to-Ethernet server.

One :class:`BusServer` is one serial line: a TCP listener on loopback (or a pty) that the gateway
opens with ``serial.serial_for_url(server.url)``, and behind it any number of simulated devices
sharing the line. Bytes from the master go through the family's :class:`RequestFramer`; every
complete request is offered to every device (all of them hear it, as on a real multi-drop bus — a
broadcast time sync must reach them all); the reply of the one that answers goes back, shaped by
the faults injected on it, and paced at the line rate when asked.

Threading design: one thread per server runs a :mod:`selectors` loop over the listener, the master
link and a wake-up socket pair, with a timeout set by the next byte due on the wire. Framer,
devices and line state are touched by that thread only, so they need no lock; other threads reach
it through the thread-safe :class:`FaultTable` and :class:`StatsRecorder`, or by setting a field
under ``_lock`` and writing a byte to the wake-up socket. A plain thread rather than asyncio: the
loop is a handful of descriptors and one timer, and it must not share an event loop (and its
scheduling jitter) with the gateway under test.

Timing model (with ``pace=True``; see docs/serial-bus-simulator.md):

* TCP delivers a request at once, but on the wire it would have taken ``char_bits / baud`` per
  byte from the moment its first byte arrived (or from when the master's previous byte finished,
  if the master is still "transmitting"). The request is complete when its last byte would be.
* A reply starts ``turnaround_ms`` (plus any ``SLOW_REPLY`` delay) after the request completed,
  never before the devices' previous transmission ended, and byte ``i`` is released when it would
  have fully arrived: ``start + (i + 1) * byte_time``. Release times are absolute, so the jitter of
  one wake-up never carries over to the next byte.
* Without pacing the line is infinitely fast: replies go out as soon as they are computed (after
  any ``SLOW_REPLY`` delay), and wire intervals have zero length.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import random
import selectors
import socket
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Self

from devices.serialbus.device import BusDevice, RequestFramer
from devices.serialbus.endpoint import MasterLink, PtyMaster, TcpMaster
from devices.serialbus.faults import DEFAULT_SLOW_MS, Fault, FaultTable
from devices.serialbus.stats import BusStats, StatsRecorder
from devices.serialbus.wire import Direction, LineTiming, WireInterval

__all__ = ["BusServer"]

_log = logging.getLogger(__name__)

_OUTBUF_LIMIT: Final = 65_536  # a master that stops reading loses bytes, as a UART overruns
_SLEEP_BELOW_S: Final = 0.0015  # deadlines this close are met by sleeping, not by epoll
_STOP_JOIN_S: Final = 5.0


@dataclass(slots=True)
class _Transmission:
    """Bytes the devices' side puts on the wire from ``start``; ``sent`` of them released so far."""

    start: float
    data: bytes
    sent: int = 0


class BusServer:
    """One simulated RS-485 line with ``devices`` on it, served on ``socket://host:port``.

    ``char_bits`` is start + data + parity + stop bits per byte: 11 for 8E1, 10 for 8N1. Pacing and
    ``turnaround_ms`` apply only with ``pace=True``. ``pty=True`` serves the line on a
    pseudo-terminal instead of TCP (:attr:`url` is then its path; open it 8N1). ``seed`` makes the
    random garbage of faults reproducible.
    """

    def __init__(
        self,
        framer: RequestFramer,
        devices: Sequence[BusDevice],
        *,
        baud: int = 2400,
        char_bits: int = 11,
        pace: bool = False,
        turnaround_ms: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        pty: bool = False,
        seed: int | None = None,
    ) -> None:
        addresses = [device.address for device in devices]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"device addresses must be unique on a bus: {addresses}")
        if turnaround_ms < 0:
            raise ValueError(f"turnaround_ms must not be negative, not {turnaround_ms}")
        self.timing: Final = LineTiming(baud, char_bits)
        self.pace: Final = pace
        self._framer = framer
        self._devices = tuple(devices)
        self._host, self._port, self._use_pty = host, port, pty
        # An unpaced line is infinitely fast: zero byte time and turnaround make one code path.
        self._byte_s = self.timing.byte_time if pace else 0.0
        self._turnaround_s = turnaround_ms / 1000.0 if pace else 0.0
        self._faults = FaultTable(addresses, rng=random.Random(seed))
        self._recorder = StatsRecorder(addresses)

        self._lock = threading.Lock()  # guards the noise settings set from other threads
        self._noise = b""
        self._noise_after_s = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None
        self._url = ""

        # Owned by the bus thread once started.
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._link: MasterLink | None = None
        self._link_events = 0
        self._rx_free_at = 0.0  # when the master's last byte finishes on the modelled wire
        self._tx_free_at = 0.0  # when the devices' last transmission (noise included) finishes
        self._last_traffic = 0.0  # end of the last request or reply: idle gaps start here
        self._noise_mark: float | None = None  # the idle gap that already got its noise
        self._vanish_counted: dict[str, float | None] = {}
        self._broken: set[str] = set()  # devices whose exception was already logged
        self._tx: collections.deque[_Transmission] = collections.deque()
        self._outbuf = bytearray()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the line and start serving; returns once a master can connect."""
        if self._thread is not None or self._stopping.is_set():
            raise RuntimeError("a BusServer starts once")
        selector = selectors.DefaultSelector()
        self._selector = selector
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
            if self._use_pty:
                pty = PtyMaster()
                self._url = pty.path
                self._attach(pty)
            else:
                listener = socket.create_server((self._host, self._port), backlog=4)
                self._listener = listener
                listener.setblocking(False)
                selector.register(listener, selectors.EVENT_READ, self._on_accept)
                host, port = listener.getsockname()[:2]
                self._port = port
                self._url = (
                    f"socket://[{host}]:{port}" if ":" in host else f"socket://{host}:{port}"
                )
        except BaseException:
            self._close_all()
            self._wake_w.close()
            raise
        self._thread = threading.Thread(target=self._serve, name=f"serialbus {self._url}")
        self._thread.start()
        _log.info("serial bus simulator on %s with %d devices", self._url, len(self._devices))

    def stop(self) -> None:
        """Stop serving, join the thread, close every descriptor; re-raise a thread crash."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._wake()
            thread.join(_STOP_JOIN_S)
            if thread.is_alive():
                raise RuntimeError(f"serial bus thread on {self._url} did not stop")
        if self._wake_w is not None:
            self._wake_w.close()
            self._wake_w = None
        if self._crash is not None:
            crash, self._crash = self._crash, None
            raise crash

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """What to give ``serial.serial_for_url``: ``socket://127.0.0.1:PORT`` or the pty path."""
        if not self._url:
            raise RuntimeError("the server is not started")
        return self._url

    @property
    def port(self) -> int:
        """The TCP port the line listens on."""
        if self._listener is None and not self._url:
            raise RuntimeError("the server is not started")
        if self._use_pty:
            raise RuntimeError("a pty line has no port; use .url")
        return self._port

    @property
    def alive(self) -> bool:
        """Whether the bus thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    # -- faults and statistics (any thread) ----------------------------------------------------

    def inject(
        self,
        address: str,
        fault: Fault,
        *,
        count: int | None = None,
        duration_s: float | None = None,
        delay_ms: float = DEFAULT_SLOW_MS,
        garbage: bytes | None = None,
        position: int | None = None,
    ) -> None:
        """Make device ``address`` commit ``fault``; see :meth:`FaultTable.inject`."""
        self._faults.inject(
            address,
            fault,
            count=count,
            duration_s=duration_s,
            delay_ms=delay_ms,
            garbage=garbage,
            position=position,
        )

    def clear(self, address: str, fault: Fault | None = None) -> None:
        """Stop ``fault`` (by default every fault) on device ``address``."""
        self._faults.clear(address, fault)

    def active_faults(self, address: str) -> frozenset[Fault]:
        """The faults in force on device ``address`` now."""
        return self._faults.active(address)

    def garbage_on_idle(self, noise: bytes, *, after_s: float = 0.01) -> None:
        """Put ``noise`` on the line once in every idle gap longer than ``after_s``; ``b""`` stops.

        The gap is measured from the end of the last request or reply, so a master polling back to
        back with shorter gaps never sees it, and one that pauses sees one burst per pause.
        """
        if after_s < 0:
            raise ValueError(f"after_s must not be negative, not {after_s}")
        with self._lock:
            self._noise, self._noise_after_s = bytes(noise), after_s
        self._wake()

    @property
    def stats(self) -> BusStats:
        """A snapshot of the counters and the wire log."""
        return self._recorder.snapshot()

    def wait_for(self, predicate: Callable[[BusStats], bool], timeout: float = 5.0) -> BusStats:
        """Block until ``predicate(stats)`` holds; return those stats, or raise ``TimeoutError``."""
        return self._recorder.wait_for(predicate, timeout)

    # -- the bus thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                self._release(now)
                self._maybe_noise(now)
                self._wait(self._next_deadline())
        except Exception as exc:
            _log.exception("serial bus simulator on %s crashed", self._url)
            self._crash = exc
        finally:
            self._close_all()

    def _wait(self, deadline: float | None) -> None:
        assert self._selector is not None
        timeout: float | None = None
        if deadline is not None:
            # epoll counts whole milliseconds and rounds up, which would release every paced byte
            # up to 1 ms late: wait for the whole milliseconds below the deadline, sleep the rest.
            whole_ms = math.floor((deadline - time.monotonic()) * 1000.0)
            timeout = (whole_ms - 0.5) / 1000.0 if whole_ms >= 1 else 0.0
        events = self._selector.select(timeout)
        for key, mask in events:
            key.data(mask)
        if not events and deadline is not None:
            remaining = deadline - time.monotonic()
            if 0 < remaining < _SLEEP_BELOW_S:
                time.sleep(remaining)

    def _next_deadline(self) -> float | None:
        deadlines: list[float] = []
        if self._tx:
            head = self._tx[0]
            deadlines.append(head.start + (head.sent + 1) * self._byte_s)
        with self._lock:
            noise, after_s = self._noise, self._noise_after_s
        if noise and self._noise_due():
            deadlines.append(self._last_traffic + after_s)
        return min(deadlines, default=None)

    def _on_wake(self, _mask: int) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)

    def _wake(self) -> None:
        sock = self._wake_w
        if sock is not None:
            # A full buffer already holds a wake-up; a closed one means the loop is gone.
            with contextlib.suppress(OSError):
                sock.send(b"\0")

    def _on_accept(self, _mask: int) -> None:
        assert self._listener is not None
        try:
            sock, peer = self._listener.accept()
        except BlockingIOError:
            return
        if self._link is not None:
            # A serial line has one master: the newcomer wins, as on a serial server.
            _log.info("master %s replaces the previous one on %s", peer, self._url)
            self._detach()
        self._attach(TcpMaster(sock))

    def _attach(self, link: MasterLink) -> None:
        assert self._selector is not None
        now = time.monotonic()
        self._link, self._link_events = link, selectors.EVENT_READ
        self._selector.register(link.fileno(), selectors.EVENT_READ, self._on_link)
        self._rx_free_at = self._tx_free_at = self._last_traffic = now
        self._noise_mark = None
        # Half a frame left by the previous master must not be glued to the new master's bytes.
        reset = getattr(self._framer, "reset", None)
        if callable(reset):
            reset()
        self._recorder.connection()

    def _detach(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        assert self._selector is not None
        self._selector.unregister(link.fileno())
        link.close()
        self._tx.clear()
        self._outbuf.clear()

    def _on_link(self, mask: int) -> None:
        if mask & selectors.EVENT_READ and self._link is not None:
            data = self._link.read()
            if data is None:
                _log.info("master disconnected from %s", self._url)
                self._detach()
                return
            if data:
                self._receive(data, time.monotonic())
        if mask & selectors.EVENT_WRITE and self._link is not None:
            self._flush()

    def _receive(self, data: bytes, arrival: float) -> None:
        # The master's bytes queue up on its side of the wire: each one ends a byte time after the
        # previous one, starting no earlier than its arrival.
        end = max(arrival, self._rx_free_at)
        for index in range(len(data)):
            end += self._byte_s
            # Fed a byte at a time, so each completed frame knows exactly when its last byte ended.
            try:
                frames = self._framer.feed(data[index : index + 1])
            except Exception:
                _log.exception("framer %r raised instead of hunting", self._framer)
                self._recorder.framer_error()
                continue
            for frame in frames:
                self._on_request(bytes(frame), end)
        self._rx_free_at = self._last_traffic = end

    def _on_request(self, frame: bytes, end: float) -> None:
        now = time.monotonic()
        answers: list[tuple[BusDevice, bytes]] = []
        for device in self._devices:
            if self._gone(device.address, now):
                continue
            try:
                reply = device.respond(frame, now)
            except Exception:
                # A simulator bug: keep the line up for the other devices; the traceback once.
                if device.address not in self._broken:
                    self._broken.add(device.address)
                    _log.exception("device %s raised on %s", device.address, frame.hex(" "))
                self._recorder.device_error(device.address)
                continue
            if reply is not None:
                answers.append((device, bytes(reply)))
        label = "+".join(device.address for device, _ in answers) or None
        start = end - len(frame) * self._byte_s
        self._recorder.interval(WireInterval(start, end, Direction.REQUEST, label, len(frame)))
        self._recorder.request([device.address for device, _ in answers])

        sending: list[tuple[bytes, float]] = []
        for device, reply in answers:
            plan = self._faults.apply(
                device.address, reply, now, checksum_offset=_checksum_offset(device)
            )
            self._recorder.reply(device.address, plan.faults, sent=bool(plan.data))
            if plan.data:
                sending.append((plan.data, plan.delay_s))
        if not sending:
            return
        if len(sending) > 1:
            self._recorder.collision()
        data = _garble([data for data, _ in sending])
        ready = end + self._turnaround_s + max(delay for _, delay in sending)
        self._transmit(data, ready, Direction.REPLY, label)

    def _gone(self, address: str, now: float) -> bool:
        until = self._faults.vanished_until(address, now)
        if until is None:
            return False
        if address not in self._vanish_counted or self._vanish_counted[address] != until:
            self._vanish_counted[address] = until  # count each vanish window once
            self._recorder.vanish(address)
        return True

    def _transmit(self, data: bytes, ready: float, direction: Direction, label: str | None) -> None:
        start = max(ready, self._tx_free_at)
        end = start + len(data) * self._byte_s
        self._tx_free_at = end
        if direction is Direction.REPLY:
            self._last_traffic = max(self._last_traffic, end)
        self._tx.append(_Transmission(start, data))
        self._recorder.interval(WireInterval(start, end, direction, label, len(data)))

    def _release(self, now: float) -> None:
        byte_s = self._byte_s
        while self._tx:
            head = self._tx[0]
            due, size = head.sent, len(head.data)
            if byte_s == 0.0:
                due = size if now >= head.start else due
            else:
                # The same expression as the deadline, so a wake-up at the deadline releases it.
                while due < size and head.start + (due + 1) * byte_s <= now:
                    due += 1
            if due > head.sent:
                self._outbuf += head.data[head.sent : due]
                head.sent = due
            if head.sent < size:
                break
            self._tx.popleft()
        if self._outbuf:
            self._flush()

    def _flush(self) -> None:
        link = self._link
        if link is None:
            self._outbuf.clear()  # nobody on the other end of the serial server: bytes are lost
            return
        try:
            written = link.write(self._outbuf)
        except OSError:
            _log.info("master link to %s broke while writing", self._url)
            self._detach()
            return
        del self._outbuf[:written]
        if len(self._outbuf) > _OUTBUF_LIMIT:
            del self._outbuf[: len(self._outbuf) - _OUTBUF_LIMIT]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._outbuf else 0)
        if events != self._link_events:
            assert self._selector is not None
            self._selector.modify(link.fileno(), events, self._on_link)
            self._link_events = events

    def _noise_due(self) -> bool:
        return self._link is not None and not self._tx and self._noise_mark != self._last_traffic

    def _maybe_noise(self, now: float) -> None:
        with self._lock:
            noise, after_s = self._noise, self._noise_after_s
        if noise and self._noise_due() and now >= self._last_traffic + after_s:
            self._noise_mark = self._last_traffic
            self._transmit(noise, now, Direction.NOISE, None)

    def _close_all(self) -> None:
        self._detach()
        if self._selector is not None:
            self._selector.close()
        for sock in (self._listener, self._wake_r):
            if sock is not None:
                sock.close()
        self._listener = self._wake_r = None


def _checksum_offset(device: BusDevice) -> int:
    # Optional hint a device may carry: where its frames keep the checksum (DL/T 645: -2).
    offset = getattr(device, "checksum_offset", -1)
    return offset if isinstance(offset, int) else -1


def _garble(replies: list[bytes]) -> bytes:
    """What the master hears when ``replies`` are transmitted at once (one reply: itself).

    An idle RS-485 line reads as mark (1); where two drivers fight, the receiver most often sees
    the space (0), so the bytes are ANDed — deterministic, and never a valid frame by luck alone.
    """
    if len(replies) == 1:
        return replies[0]
    size = max(len(reply) for reply in replies)
    garbled = bytearray(b"\xff" * size)
    for reply in replies:
        for index, byte in enumerate(reply):
            garbled[index] &= byte
    return bytes(garbled)
