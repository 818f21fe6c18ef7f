"""Things the interop tests talk to: pymodbus's simulator on TCP, and our meters on TCP.

RTU framing over TCP is what an RS-485-to-Ethernet server (and pyserial's ``socket://``) gives a
gateway, so both servers speak RTU ADUs on a loopback socket with an ephemeral port.

* `PymodbusSimulator` runs pymodbus 3.16.1's `ModbusTcpServer(framer=FramerType.RTU)` with the
  v4-ready `pymodbus.simulator` datastore on an event loop of its own thread, so a test can read
  it through blocking pyserial. Everything it starts is stopped and closed on exit.
* `BusServer` serves `BusDevice`s (our meters) through a `RequestFramer` on the test's own loop,
  the smallest stand-in for the simulated bus: every complete request is offered to every
  device, and what they answer is written back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

import serial
from pymodbus import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimDevice

from devices.modbus import Reply, ReplyDecoder, Request, encode
from devices.serialbus import BusDevice, RequestFramer

T = TypeVar("T")


class PymodbusSimulator:
    """pymodbus's RTU server on ``127.0.0.1:port``, run on a private loop in a thread."""

    def __init__(
        self,
        devices: SimDevice | list[SimDevice],
        *,
        trace_packet: Callable[[bool, bytes], bytes] | None = None,
    ) -> None:
        self._devices = devices
        self._trace_packet = trace_packet
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: ModbusTcpServer | None = None
        self.port = 0

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _start(self) -> ModbusTcpServer:
        server = ModbusTcpServer(
            self._devices,
            framer=FramerType.RTU,
            address=("127.0.0.1", 0),
            trace_packet=self._trace_packet,
        )
        await server.serve_forever(background=True)
        return server

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
        # Connection handlers outlive the listener; end them so the loop closes clean.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> PymodbusSimulator:
        self._thread.start()
        self._server = self._run(self._start())
        transport: Any = self._server.transport
        self.port = transport.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._run(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def open(self, timeout: float = 2.0) -> serial.SerialBase:
        """A pyserial port on the server, as a gateway opens a serial server."""
        return serial.serial_for_url(f"socket://127.0.0.1:{self.port}", timeout=timeout)


def transact(port: serial.SerialBase, request: Request) -> Reply:
    """Send ``request`` with our codec and return the first reply our decoder finds in the answer.

    Raises TimeoutError when the port's read timeout passes with no reply.
    """
    port.write(encode(request))
    decoder = ReplyDecoder(request)
    while True:
        chunk = port.read(max(1, port.in_waiting))
        if not chunk:
            raise TimeoutError(f"no reply to {request}")
        if replies := decoder.feed(chunk):
            return replies[0]


class BusServer:
    """``devices`` on one simulated line at ``127.0.0.1:port``, framed by ``framer()``."""

    def __init__(
        self,
        devices: Sequence[BusDevice],
        framer: Callable[[], RequestFramer],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.devices = devices
        self._framer = framer
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        #: Every request frame seen and what was answered (None for silence), in order.
        self.log: list[tuple[bytes, bytes | None]] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        framer = self._framer()
        try:
            while data := await reader.read(4096):
                for frame in framer.feed(data):
                    now = self._clock()
                    answers = [device.respond(frame, now) for device in self.devices]
                    replies = [answer for answer in answers if answer is not None]
                    self.log.append((frame, b"".join(replies) if replies else None))
                    for reply in replies:
                        writer.write(reply)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def __aenter__(self) -> BusServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # the handler sees end of file and finishes
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
