"""A simulated IP door controller speaking the door profile over MQTT.

`DoorSimulator` puts a `DoorController` (every decision) on the site broker through an `MqttLink`
(the paho connection), and runs both on one worker thread.

Threading design: one worker thread per simulator runs one loop. It waits in a `selectors`
selector on two things — the MQTT socket and a wake-up socket pair — with a timeout set by the
nearest deadline (the controller's next timer, keep-alive housekeeping, a reconnect back-off, a
stop deadline). The link runs no thread of its own, so every paho callback runs on the worker too.
The controller is therefore touched by exactly one thread and needs no lock; other threads talk to
it only by queueing a request and writing a byte to the wake-up socket. The snapshot tests look at
(`SimulatorSnapshot`) is copied out under a `threading.Condition` after each loop turn and *before*
the turn's messages are written, so whoever receives a message can already see the state that
produced it.

Connection rules:

* Clean session, always: a command queued by the broker while the controller was away must never
  be executed late.
* ``online: true`` is published only once the ``cmd`` subscription is acknowledged, so a gateway
  that sees the controller online can command it at once. Events raised while disconnected are
  kept (bounded) and published on reconnection, before the fresh state.
* The retained last will ``{"v":1,"online":false}`` fires when the connection dies without a
  DISCONNECT — which is how the ``OFFLINE`` behaviour and `reboot` leave. `stop` is a clean
  shutdown: it publishes the same offline state itself, waits for the broker's PUBACK, then sends
  DISCONNECT.
* Reconnection backs off from 50 ms to 5 s with jitter, and starts over after a success.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import random
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from devices.door.behaviour import Behaviour
from devices.door.controller import DoorController, Outbound
from devices.door.link import LinkSettings, MqttLink, MqttProtocol
from devices.door.profile import DoorOffline, DoorPosition, StrikeState, encode
from devices.door.topics import DEFAULT_PREFIX, DoorTopics, TopicKind

__all__ = ["DoorSimulator", "SimulatorSnapshot", "run_simulators"]

_log = logging.getLogger(__name__)

_WAKE: Final = "wake"
_TICK_INTERVAL_S: Final = 1.0
_MIN_BACKOFF_S: Final = 0.05
_MAX_BACKOFF_S: Final = 5.0
_STOP_GRACE_S: Final = 2.0
_BACKLOG_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class SimulatorSnapshot:
    """What a simulated controller looks like from outside at one instant."""

    online: bool
    """Connected, subscribed to its ``cmd`` topic, and its online state published."""
    behaviour: Behaviour
    boot: str
    seq: int
    door: DoorPosition
    strike: StrikeState
    strike_pulses: int
    """How many times the strike actually moved to released: the "did the door unlock" counter."""


class DoorSimulator:
    """A door controller with a strike and a door sensor, on the site broker.

    Run it with `start`/`stop` (or as a context manager). Change what it does at run time with
    `set_behaviour`, `force_open`, `close_door` and `reboot`, from any thread. Observe it with
    `snapshot` and `wait_for`.
    """

    def __init__(
        self,
        *,
        device: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = DEFAULT_PREFIX,
        behaviour: Behaviour = Behaviour.WALK_THROUGH,
        username: str | None = None,
        password: str | None = None,
        protocol: MqttProtocol = MqttProtocol.V311,
        open_delay_ms: int = 2,
        walk_through_ms: int = 1000,
        held_open_s: float = 30.0,
        strike_relay: int = 1,
        fw: str = "sim-1.0",
        keepalive_s: int = 30,
        client_id: str | None = None,
    ) -> None:
        self._topics = DoorTopics(prefix, device)
        self._link_settings = LinkSettings(
            host=host,
            port=port,
            # Fixed for this simulator's life, like a real controller's client id; the random part
            # keeps two simulators of one device name from taking over each other's session.
            client_id=client_id or f"doorsim-{device}-{secrets.token_hex(3)}",
            will_topic=self._topics.state,
            will_payload=encode(DoorOffline()),
            subscription=self._topics.cmd,
            protocol=protocol,
            username=username,
            password=password,
            keepalive_s=keepalive_s,
        )
        self._controller = DoorController(
            behaviour=behaviour,
            open_delay_ms=open_delay_ms,
            walk_through_ms=walk_through_ms,
            held_open_s=held_open_s,
            strike_relay=strike_relay,
            fw=fw,
        )

        # Shared with other threads; everything below `_lock` is guarded by it.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._snapshot = self._take_snapshot(online=False)
        self._thread: threading.Thread | None = None
        self._wake_w: socket.socket | None = None
        self._finished = False
        self._failure: BaseException | None = None
        self._requests: queue.SimpleQueue[Callable[[float], None]] = queue.SimpleQueue()

        # Owned by the worker thread once it runs.
        self._wake_r: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._link: MqttLink | None = None
        self._want_connected = behaviour is not Behaviour.OFFLINE
        self._reconnect_at = 0.0
        self._backoff_s = _MIN_BACKOFF_S
        self._tick_at = 0.0
        self._inbox: list[bytes] = []
        self._backlog: collections.deque[Outbound] = collections.deque()
        self._stopping = False
        self._stop_deadline = 0.0
        self._offline_mid: int | None = None
        self._disconnect_sent = False
        self._reported_down = False

    # --- public surface ------------------------------------------------------------------------

    @property
    def topics(self) -> DoorTopics:
        """This controller's topics."""
        return self._topics

    @property
    def device(self) -> str:
        """This controller's device name."""
        return self._topics.device

    def snapshot(self) -> SimulatorSnapshot:
        """The controller's state as of the end of the worker's last loop turn."""
        with self._lock:
            return self._snapshot

    @property
    def online(self) -> bool:
        """See `SimulatorSnapshot.online`."""
        return self.snapshot().online

    @property
    def behaviour(self) -> Behaviour:
        """The behaviour in force (a `set_behaviour` takes effect on the worker's next turn)."""
        return self.snapshot().behaviour

    @property
    def boot(self) -> str:
        """The current boot id."""
        return self.snapshot().boot

    @property
    def door(self) -> DoorPosition:
        """What the door sensor reads."""
        return self.snapshot().door

    @property
    def strike(self) -> StrikeState:
        """Where the strike is."""
        return self.snapshot().strike

    @property
    def strike_pulses(self) -> int:
        """How many times the strike actually moved to released."""
        return self.snapshot().strike_pulses

    def wait_for(
        self, predicate: Callable[[SimulatorSnapshot], bool], timeout: float
    ) -> SimulatorSnapshot:
        """Block until `predicate(snapshot)` holds and return that snapshot.

        Raises `TimeoutError` after `timeout` seconds, and `RuntimeError` if the simulator stops
        first.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._finished or predicate(self._snapshot), timeout)
            if predicate(self._snapshot):
                return self._snapshot
            if self._finished:
                raise RuntimeError(f"door simulator {self.device} stopped") from self._failure
            raise TimeoutError(f"door simulator {self.device}: condition not met in {timeout} s")

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Switch behaviour; going to or leaving `Behaviour.OFFLINE` drops or restores the link."""
        behaviour = Behaviour(behaviour)
        self._submit(lambda now: self._apply_behaviour(behaviour, now))

    def force_open(self) -> None:
        """Push the door open by hand (``forced_open`` if the strike is locked); it stays open."""
        self._submit(lambda now: self._emit(self._controller.force_open(now)))

    def close_door(self) -> None:
        """Shut the door."""
        self._submit(lambda now: self._emit(self._controller.close_door(now)))

    def reboot(self) -> None:
        """Power-cycle the controller: the link drops (last will), then a new boot starts."""
        self._submit(self._reboot)

    def start(self) -> None:
        """Start the worker thread; it connects to the broker and keeps reconnecting."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("a DoorSimulator can be started only once")
            wake_r, wake_w = socket.socketpair()
            wake_r.setblocking(False)
            wake_w.setblocking(False)
            self._wake_r, self._wake_w = wake_r, wake_w
            self._thread = threading.Thread(
                target=self._run, name=f"door-sim-{self.device}", daemon=True
            )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Publish the offline state, disconnect, join the worker and close every socket.

        Raises `RuntimeError` if the worker failed or did not finish within `timeout` seconds.
        Stopping a simulator that never started, or stopping twice, does nothing.
        """
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        if self._try_submit(self._begin_stop):
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"door simulator {self.device} did not stop in {timeout} s")
        if self._failure is not None:
            raise RuntimeError(f"door simulator {self.device} failed") from self._failure

    def __enter__(self) -> DoorSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- cross-thread requests -----------------------------------------------------------------

    def _submit(self, request: Callable[[float], None]) -> None:
        if not self._try_submit(request):
            raise RuntimeError(f"door simulator {self.device} is stopped")

    def _try_submit(self, request: Callable[[float], None]) -> bool:
        with self._lock:
            if self._finished:
                return False
            self._requests.put(request)
            if self._wake_w is not None:
                # A full buffer is full of wake-ups already: the worker will wake anyway.
                with contextlib.suppress(BlockingIOError):
                    self._wake_w.send(b"\0")
            return True

    def _run_requests(self, now: float) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            request(now)

    # --- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._selector = selectors.DefaultSelector()
            assert self._wake_r is not None
            self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
            self._link = MqttLink(
                self._link_settings,
                self._selector,
                on_ready=self._go_online,
                on_message=self._inbox.append,
                on_lost=self._connection_lost,
            )
            self._loop()
        except Exception as exc:
            _log.exception("door simulator %s failed", self.device)
            self._failure = exc
        finally:
            self._teardown()

    def _loop(self) -> None:
        assert self._selector is not None
        link = self._mqtt()
        now = time.monotonic()
        self._emit(self._controller.power_on(now))
        self._reconnect_at = now
        while not (self._stopping and (not link.has_socket or now >= self._stop_deadline)):
            for key, mask in self._selector.select(self._timeout(now)):
                if key.data == _WAKE:
                    self._drain_wake()
                else:
                    link.on_ready_to_io(mask)
            now = time.monotonic()
            self._handle_inbox(now)
            self._run_requests(now)
            self._emit(self._controller.advance(now))
            self._housekeeping(now)
            self._publish_snapshot()
            link.flush()

    def _mqtt(self) -> MqttLink:
        link = self._link
        assert link is not None
        return link

    def _timeout(self, now: float) -> float:
        link = self._mqtt()
        deadlines = [now + _TICK_INTERVAL_S]
        nearest = self._controller.next_deadline()
        if nearest is not None:
            deadlines.append(nearest)
        if link.has_socket:
            deadlines.append(self._tick_at)
        elif self._want_connected and not self._stopping:
            deadlines.append(self._reconnect_at)
        if self._stopping:
            deadlines.append(self._stop_deadline)
        return max(0.0, min(deadlines) - now)

    def _housekeeping(self, now: float) -> None:
        link = self._mqtt()
        if self._stopping:
            offline_acked = self._offline_mid is not None and link.acknowledged(self._offline_mid)
            if offline_acked and not self._disconnect_sent:
                self._disconnect_sent = True
                link.disconnect()
            return
        if not self._want_connected:
            link.drop()
            return
        if not link.has_socket:
            if now >= self._reconnect_at:
                self._connect(now)
            return
        if now >= self._tick_at:
            self._tick_at = now + _TICK_INTERVAL_S
            link.tick()

    def _connect(self, now: float) -> None:
        try:
            self._mqtt().connect()
        except OSError as exc:
            if not self._reported_down:
                _log.warning("door simulator %s cannot reach the broker: %s", self.device, exc)
                self._reported_down = True
            self._schedule_reconnect(now)
            return
        self._tick_at = now + _TICK_INTERVAL_S

    def _schedule_reconnect(self, now: float) -> None:
        # Jitter keeps a site's worth of controllers from reconnecting in lockstep.
        self._reconnect_at = now + self._backoff_s * random.uniform(0.8, 1.2)
        self._backoff_s = min(self._backoff_s * 2, _MAX_BACKOFF_S)

    def _apply_behaviour(self, behaviour: Behaviour, now: float) -> None:
        self._controller.behaviour = behaviour
        want = behaviour is not Behaviour.OFFLINE
        if want and not self._want_connected:
            self._backoff_s = _MIN_BACKOFF_S
            self._reconnect_at = now
        self._want_connected = want

    def _reboot(self, now: float) -> None:
        # Unsent and unacknowledged messages of the old boot die with its RAM: the renewed link
        # has no in-flight queue to replay, so no stale state can follow the new boot's.
        self._mqtt().renew()
        self._backlog.clear()
        self._emit(self._controller.reboot(now))
        self._backoff_s = _MIN_BACKOFF_S
        self._reconnect_at = now

    def _begin_stop(self, now: float) -> None:
        self._stopping = True
        self._stop_deadline = now + _STOP_GRACE_S
        link = self._mqtt()
        if link.ready:
            payload = encode(DoorOffline())
            self._offline_mid = link.publish(self._topics.state, payload, retain=True, watch=True)
        else:
            link.drop()

    def _handle_inbox(self, now: float) -> None:
        # The link appends to this very list object (its on_message is `self._inbox.append`).
        inbox = self._inbox.copy()
        self._inbox.clear()
        for payload in inbox:
            self._emit(self._controller.receive(payload, now))

    def _emit(self, outputs: Iterable[Outbound]) -> None:
        # The controller has already moved: make that visible to observers before anything is
        # published, so nobody can hear of an effect (an ack, an opened door) before the
        # snapshot shows its cause (a strike pulse).
        self._publish_snapshot()
        link = self._mqtt()
        for item in outputs:
            if link.ready:
                self._publish(item)
            elif item.kind is not TopicKind.STATE:
                # Kept for the reconnection; a state is not, the fresh one supersedes it.
                if len(self._backlog) >= _BACKLOG_LIMIT:
                    _log.warning("door simulator %s backlog full: dropping the oldest", self.device)
                    self._backlog.popleft()
                self._backlog.append(item)

    def _publish(self, item: Outbound) -> None:
        self._mqtt().publish(
            self._topics.topic(item.kind),
            encode(item.message),
            retain=item.kind is TopicKind.STATE,
        )

    def _go_online(self) -> None:
        # Called by the link once the cmd subscription is acknowledged.
        self._backoff_s = _MIN_BACKOFF_S
        if self._reported_down:
            _log.info("door simulator %s is back on the broker", self.device)
            self._reported_down = False
        while self._backlog:
            self._publish(self._backlog.popleft())
        self._publish(Outbound(TopicKind.STATE, self._controller.state()))

    def _connection_lost(self, reason: str) -> None:
        # Called by the link whenever its connection ends, wanted or not.
        if self._want_connected and not self._stopping:
            if not self._reported_down:
                _log.warning("door simulator %s lost the broker: %s", self.device, reason)
                self._reported_down = True
            self._schedule_reconnect(time.monotonic())

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def _take_snapshot(self, *, online: bool) -> SimulatorSnapshot:
        controller = self._controller
        return SimulatorSnapshot(
            online=online,
            behaviour=controller.behaviour,
            boot=controller.boot,
            seq=controller.seq,
            door=controller.door,
            strike=controller.strike,
            strike_pulses=controller.strike_pulses,
        )

    def _publish_snapshot(self) -> None:
        snapshot = self._take_snapshot(online=self._link is not None and self._link.ready)
        with self._changed:
            if snapshot != self._snapshot:
                self._snapshot = snapshot
                self._changed.notify_all()

    def _teardown(self) -> None:
        if self._link is not None:
            try:
                self._link.drop()
            except Exception:
                _log.exception("door simulator %s: closing the MQTT socket failed", self.device)
        with self._changed:
            self._finished = True
            self._snapshot = self._take_snapshot(online=False)
            wake_w, self._wake_w = self._wake_w, None
            self._changed.notify_all()
        if self._selector is not None:
            self._selector.close()
        for sock in (self._wake_r, wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = None


def run_simulators(
    devices: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    prefix: str = DEFAULT_PREFIX,
    behaviour: Behaviour = Behaviour.WALK_THROUGH,
    username: str | None = None,
    password: str | None = None,
    protocol: MqttProtocol = MqttProtocol.V311,
    open_delay_ms: int = 2,
    walk_through_ms: int = 1000,
    held_open_s: float = 30.0,
    stop: threading.Event | None = None,
) -> None:
    """Run one simulator per device name until `stop` is set (or Ctrl-C), then stop them all.

    Meant for a command line: it blocks, and it always stops what it started.
    """
    simulators = [
        DoorSimulator(
            device=device,
            host=host,
            port=port,
            prefix=prefix,
            behaviour=behaviour,
            username=username,
            password=password,
            protocol=protocol,
            open_delay_ms=open_delay_ms,
            walk_through_ms=walk_through_ms,
            held_open_s=held_open_s,
        )
        for device in devices
    ]
    started: list[DoorSimulator] = []
    try:
        for simulator in simulators:
            simulator.start()
            started.append(simulator)
        (stop if stop is not None else threading.Event()).wait()
    finally:
        for simulator in reversed(started):
            simulator.stop()
