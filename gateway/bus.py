"""One owner per RS-485 bus: a single task, a single worker thread, one exchange at a time.

A half-duplex line carries one transmitter at a time, so a :class:`BusOwner` is the only thing that
ever touches its port. Everyone else — meter schedules, on-demand reads, locker commands —
:meth:`~BusOwner.submit`\\ s an :class:`~gateway.bus_exchange.Exchange` and awaits its
:class:`~gateway.bus_exchange.Outcome`. The owner takes the next job from its priority queue
(:mod:`gateway.bus_queue`: commands, then on-demand reads, then polls; FIFO within one), and runs
one attempt of it on the bus's worker thread (:mod:`gateway.bus_port`); only when that attempt has
come back does it take the next. Two requests in flight on one line are therefore impossible by
construction, not by timing.

Why a worker thread: pyserial blocks. A ``ThreadPoolExecutor(max_workers=1)`` per bus keeps the
event loop free (doors, MQTT, other buses) while a 2400-baud reply trickles in, and its single
worker serialises everything done to the port, including opening and closing it, even if the
owner task is cancelled and restarted by the supervisor mid-attempt (the next attempt queues
behind the one still running). One thread per bus, not a shared pool: a slow or dead line must not
take a thread another bus is waiting for; 64 buses are 64 mostly idle threads.

Retries back off *in the queue*, not on the line: a failed attempt goes back with a "not before"
time, and a locker command that arrives meanwhile is served first. A port that breaks or
disappears (unplugged adapter, serial server restarted) is closed and reopened with exponential
back-off and jitter; waiting jobs stay queued, and those whose deadline passes are failed with
:class:`~gateway.bus_errors.ExpiredError`. Device statistics and online/offline transitions are
kept by :class:`~gateway.bus_stats.DeviceStats`; each transition is logged once here and handed
to ``on_transition`` (the gateway turns it into a ``device.online`` event).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import structlog

from gateway.bus_errors import (
    BusClosedError,
    ExpiredError,
    NoReplyError,
    PortError,
)
from gateway.bus_exchange import Attempt, Exchange, Outcome, ReplyMode
from gateway.bus_port import Port
from gateway.bus_queue import BusQueue, Job
from gateway.bus_stats import DeviceSnapshot, DeviceStats
from gateway.settings import BusSettings

__all__ = ["BusOwner"]

log = structlog.get_logger(__name__)

_REOPEN_MIN_S: Final = 0.1
_REOPEN_MAX_S: Final = 30.0
_RETRY_BASE_S: Final = 0.02
_RETRY_MAX_S: Final = 0.5

Transition = Callable[[DeviceSnapshot], None]
LatencyObserver = Callable[[str, float], None]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class BusOwner:
    """The sole owner of one serial port; see the module docstring."""

    def __init__(
        self,
        settings: BusSettings,
        *,
        gap_s: float,
        on_transition: Transition | None = None,
        observe_latency: LatencyObserver | None = None,
        wall_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.gap_s = gap_s
        self._port = Port(
            settings.name,
            settings.url,
            baud=settings.baud,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            char_bits=settings.char_bits,
        )
        self._on_transition = on_transition
        self._observe_latency = observe_latency
        self._wall_ms = wall_ms
        self._queue = BusQueue(time.monotonic)
        self._stats: dict[str, DeviceStats] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._current: Job | None = None
        self._closed = False
        self.port_up: bool | None = None
        """None before the first open; then whether the port is open and working."""
        self._port_changed = asyncio.Event()
        self.reopens = 0
        """Times the port was opened again after failing."""
        self.exchanges = 0
        """Attempts carried out on the line."""
        self.bytes_sent = 0
        """Request bytes written (wake-up preambles included)."""
        self.bytes_received = 0
        """Bytes received during attempts (noise included)."""

    # -- devices and their statistics ----------------------------------------------------------

    def register(self, device: str, *, offline_after: int | None = None) -> None:
        """Track statistics for ``device`` (before its first exchange)."""
        if device not in self._stats:
            limit = offline_after if offline_after is not None else self.settings.offline_after
            self._stats[device] = DeviceStats(device, self.name, limit)

    def device(self, device: str) -> DeviceSnapshot:
        """The statistics of one registered device."""
        return self._stats[device].snapshot()

    def devices(self) -> dict[str, DeviceSnapshot]:
        """The statistics of every registered device."""
        return {name: stats.snapshot() for name, stats in self._stats.items()}

    @property
    def queued(self) -> int:
        """Jobs waiting (ready or backing off)."""
        return len(self._queue)

    @property
    def stray_bytes(self) -> int:
        """Bytes heard outside any exchange (late replies, idle-line noise)."""
        return self._port.stray_bytes

    async def wait_port(self, up: bool) -> None:
        """Wait until the port is up (``True``) or down (``False``)."""
        while self.port_up is not up:
            self._port_changed.clear()
            await self._port_changed.wait()

    def _set_port(self, up: bool) -> None:
        self.port_up = up
        self._port_changed.set()

    def health(self) -> dict[str, Any]:
        """This bus for ``/healthz``: port state, queue depth, each device's state."""
        names = {True: "online", False: "offline", None: "unknown"}
        return {
            "url": self.settings.url,
            "port": {True: "up", False: "down", None: "unknown"}[self.port_up],
            "queued": self.queued,
            "devices": {name: names[s.online] for name, s in self._stats.items()},
        }

    # -- submitting work -----------------------------------------------------------------------

    def submit(self, exchange: Exchange) -> asyncio.Future[Outcome]:
        """Queue ``exchange``; the future resolves to its outcome or an :class:`ExchangeError`."""
        if self._closed:
            raise BusClosedError(self.name, "the bus is closed")
        self.register(exchange.device)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put(Job(exchange, future))
        return future

    async def request(self, exchange: Exchange) -> Outcome:
        """Submit ``exchange`` and wait for its outcome."""
        return await self.submit(exchange)

    # -- the owner task ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the queue forever (a supervised task; a restart picks up where it stopped)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"bus-{self.name}")
        executor = self._executor
        if self._current is not None:  # interrupted by a crash or cancellation: run it again
            self._queue.put(self._current)
            self._current = None
        while True:
            job = await self._queue.get()
            self._current = job
            if self._expired(job) or not await self._ensure_open(loop, executor, job):
                self._current = None
                continue
            try:
                attempt = await loop.run_in_executor(
                    executor, self._port.attempt, job.exchange, self.gap_s
                )
            except PortError as exc:
                self._port_failed(exc)
                self._queue.put(job)  # the line failed, not the device: the attempt is not spent
            else:
                self.exchanges += 1
                self.bytes_sent += attempt.request_bytes
                self.bytes_received += attempt.reply_bytes
                self._settle(job, attempt)
            self._current = None

    async def close(self) -> None:
        """Fail whatever waits, close the port on its own thread, stop the thread."""
        self._closed = True
        jobs = self._queue.drain()
        if self._current is not None:
            jobs.append(self._current)
            self._current = None
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(BusClosedError(self.name, "the bus was closed"))
                job.future.exception()  # mark retrieved: nobody may be awaiting it any more
        executor, self._executor = self._executor, None
        if executor is not None:
            # Behind any attempt still running, so the port is closed by the thread that uses it.
            await asyncio.get_running_loop().run_in_executor(executor, self._port.close)
            executor.shutdown(wait=True)
        else:
            self._port.close()

    # -- internals -----------------------------------------------------------------------------

    def _expired(self, job: Job) -> bool:
        deadline = job.exchange.deadline
        if deadline is None or time.monotonic() <= deadline:
            return False
        self._fail_expired(job)
        return True

    def _fail_expired(self, job: Job) -> None:
        if not job.future.done():
            job.future.set_exception(
                ExpiredError(self.name, job.exchange.device, "deadline passed while queued")
            )

    async def _ensure_open(
        self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, job: Job
    ) -> bool:
        """Open the port, backing off while it cannot be; False if ``job`` expired meanwhile."""
        backoff = _REOPEN_MIN_S
        while not self._port.is_open:
            try:
                await loop.run_in_executor(executor, self._port.open)
            except PortError as exc:
                self._port_failed(exc)
                # Waiting jobs keep their place; only those nobody can use any more are failed.
                self._queue.expire(time.monotonic(), self._fail_expired)
                if self._expired(job):
                    return False
                await asyncio.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, _REOPEN_MAX_S)
                continue
            if self.port_up is False:
                self.reopens += 1
                log.info("bus.port_recovered", bus=self.name, url=self.settings.url)
            else:
                log.info("bus.port_open", bus=self.name, url=self.settings.url)
            self._set_port(True)
        return True

    def _port_failed(self, exc: PortError) -> None:
        if self.port_up is not False:
            log.warning("bus.port_down", bus=self.name, url=self.settings.url, error=exc.detail)
        self._set_port(False)

    def _settle(self, job: Job, attempt: Attempt) -> None:
        exchange = job.exchange
        stats = self._stats[exchange.device]
        answered = attempt.frame is not None
        expected = exchange.reply is ReplyMode.REQUIRED
        stats.attempted(attempt, answered=answered, expected=expected)
        job.attempts += 1
        job.latency_s += attempt.latency_s
        if answered and self._observe_latency is not None:
            self._observe_latency(exchange.device, attempt.latency_s)
        transition: bool | None = None
        if answered or not expected:
            if answered:
                transition = stats.succeeded(self._wall_ms())
            if not job.future.done():
                job.future.set_result(Outcome(attempt.frame, job.attempts, job.latency_s))
        elif job.attempts <= exchange.retries:
            pause = min(_RETRY_BASE_S * 2 ** (job.attempts - 1), _RETRY_MAX_S)
            job.not_before = time.monotonic() + pause
            self._queue.put(job)
        else:
            transition = stats.failed()
            if not job.future.done():
                job.future.set_exception(
                    NoReplyError(self.name, exchange.device, f"no reply in {job.attempts} attempts")
                )
        if transition is not None:
            self._report(stats.snapshot())

    def _report(self, snapshot: DeviceSnapshot) -> None:
        if snapshot.online:
            log.info("bus.device_online", bus=self.name, device=snapshot.device)
        else:
            log.warning(
                "bus.device_offline",
                bus=self.name,
                device=snapshot.device,
                failures=snapshot.consecutive_failures,
            )
        if self._on_transition is not None:
            try:
                self._on_transition(snapshot)
            except Exception:
                # Reporting must not stop the line; the statistics still hold the state.
                log.exception("bus.transition_report_failed", bus=self.name, device=snapshot.device)
