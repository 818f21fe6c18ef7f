"""A simulated locker bank terminal (keypad, camera, small screen) speaking the terminal profile.

`TerminalSimulator` plays one terminal on the site broker: it publishes what people do (a pickup
code typed, a deposit chosen, a camera frame) on demand, and records every display message the
gateway sends it. The connection is the door package's `MqttLink` (`devices.door.link`, generic
MQTT, no door in it), so this module imports no paho of its own.

Threading design, as in `devices.door.simulator`: one worker thread per simulator runs one loop,
waiting in a `selectors` selector on the MQTT socket and a wake-up socket pair, with a timeout set
by the nearest deadline (keep-alive housekeeping, a reconnect back-off, the stop deadline). paho
runs no thread of its own, so every paho callback runs on the worker. Other threads (a test, the
console) build and validate a message on their own thread — so a bad code raises right there —
then queue its publication and write a byte to the wake-up socket. Received displays are recorded
under a `threading.Condition`, which `wait_for_display` blocks on: tests never sleep and hope.

Connection rules:

* Clean session; ``{"v":1,"online":true,"fw":…}`` (retained) only once the ``display``
  subscription is acknowledged; the retained last will ``{"v":1,"online":false}`` fires when the
  connection dies without DISCONNECT (`set_connected(False)`); `stop` publishes it itself, waits
  for the PUBACK, then disconnects.
* Nothing is published late. An event or frame asked for while the terminal is offline is dropped
  (and counted), never queued: the person in front of it has been told it is offline and has moved
  on. A connection that dies takes its unacknowledged messages with it: the link starts over with a
  fresh client, which has nothing in flight to resend.
* The courier session is forgotten with the connection (the gateway owns it and re-sends it).
* Reconnection backs off from 50 ms to 5 s with jitter, and starts over after a success.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import random
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devices.door.link import LinkSettings, MqttLink, MqttProtocol
from devices.terminal.errors import ErrorReason, TerminalProfileError
from devices.terminal.profile import (
    MAX_FRAME_BYTES,
    CourierLogoutEvent,
    DepositCancelEvent,
    DepositEvent,
    DepositRetryEvent,
    Display,
    Event,
    Frame,
    FrameFormat,
    KeypadEvent,
    LockerSize,
    SessionDisplay,
    ShowDisplay,
    TerminalOffline,
    TerminalState,
    encode,
    parse_display,
    sniff_frame_format,
)
from devices.terminal.topics import DEFAULT_PREFIX, TerminalTopics, TopicKind

__all__ = [
    "TerminalSimulator",
    "TerminalSnapshot",
    "describe_display",
    "run_console",
]

_log = logging.getLogger(__name__)

_WAKE: Final = "wake"
_TICK_INTERVAL_S: Final = 1.0
_MIN_BACKOFF_S: Final = 0.05
_MAX_BACKOFF_S: Final = 5.0
_STOP_GRACE_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class TerminalSnapshot:
    """What a simulated terminal looks like from outside at one instant."""

    online: bool
    """Connected, subscribed to its ``display`` topic, and its online state published."""
    connected: bool
    """Whether it wants to be on the broker (`TerminalSimulator.set_connected`)."""
    courier: bool
    """A courier session is open (the last ``session`` display said so, on this connection)."""
    company: str | None
    """The open courier session's company, if the gateway named one."""
    screen: ShowDisplay | None
    """The last ``show`` received: what the screen shows now."""
    displays: int
    """Valid display messages received."""
    refused_displays: int
    """Display payloads that did not parse (logged and otherwise ignored)."""
    events_sent: int
    frames_sent: int
    dropped: int
    """Events and frames asked for while offline: never published."""


def _any_display(display: Display) -> bool:
    return True


class TerminalSimulator:
    """A locker terminal on the site broker.

    Run it with `start`/`stop` (or as a context manager). Act with `type_code`, `request_deposit`,
    `retry`, `cancel`, `logout` and `show_image` from any thread; each validates its message on the
    calling thread (raising `TerminalProfileError`) and returns at once — the worker publishes it.
    Observe with `snapshot`, `wait_for`, `displays` and `wait_for_display`.

    `on_display`, if given, is called on the worker thread with each display as it arrives; it must
    not block.
    """

    def __init__(
        self,
        *,
        device: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = DEFAULT_PREFIX,
        username: str | None = None,
        password: str | None = None,
        protocol: MqttProtocol = MqttProtocol.V311,
        fw: str = "sim-1.0",
        keepalive_s: int = 30,
        client_id: str | None = None,
        on_display: Callable[[Display], None] | None = None,
    ) -> None:
        self._topics = TerminalTopics(prefix, device)
        self._state = TerminalState(fw=fw)
        self._link_settings = LinkSettings(
            host=host,
            port=port,
            # Fixed for this simulator's life; the random part keeps two simulators of one device
            # name from taking over each other's session.
            client_id=client_id or f"termsim-{device}-{secrets.token_hex(3)}",
            will_topic=self._topics.state,
            will_payload=encode(TerminalOffline()),
            subscription=self._topics.display,
            protocol=protocol,
            username=username,
            password=password,
            keepalive_s=keepalive_s,
        )
        self._on_display = on_display
        # Event ids: random per simulator, so ids stay unique across restarts of one device.
        self._id_tag = secrets.token_hex(4)
        self._id_counter = itertools.count(1)

        # Shared with other threads; everything below `_lock` is guarded by it.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._wake_w: socket.socket | None = None
        self._finished = False
        self._failure: BaseException | None = None
        self._requests: queue.SimpleQueue[Callable[[float], None]] = queue.SimpleQueue()
        self._displays: list[Display] = []
        self._taken: list[bool] = []

        # Owned by the worker thread once it runs.
        self._wake_r: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._link: MqttLink | None = None
        self._want_connected = True
        self._fresh_link_needed = False
        self._reconnect_at = 0.0
        self._backoff_s = _MIN_BACKOFF_S
        self._tick_at = 0.0
        self._inbox: list[bytes] = []
        self._courier = False
        self._company: str | None = None
        self._screen: ShowDisplay | None = None
        self._refused = 0
        self._events_sent = 0
        self._frames_sent = 0
        self._dropped = 0
        self._stopping = False
        self._stop_deadline = 0.0
        self._offline_mid: int | None = None
        self._disconnect_sent = False
        self._reported_down = False

        self._snapshot = self._take_snapshot(online=False)

    # --- the outside ---------------------------------------------------------------------------

    @property
    def topics(self) -> TerminalTopics:
        """This terminal's topics."""
        return self._topics

    @property
    def device(self) -> str:
        """This terminal's device name."""
        return self._topics.device

    def snapshot(self) -> TerminalSnapshot:
        """The terminal's state as of the worker's last loop turn (or last display)."""
        with self._lock:
            return self._snapshot

    @property
    def online(self) -> bool:
        """See `TerminalSnapshot.online`."""
        return self.snapshot().online

    @property
    def displays(self) -> tuple[Display, ...]:
        """Every valid display received so far, in arrival order."""
        with self._lock:
            return tuple(self._displays)

    def wait_for(
        self, predicate: Callable[[TerminalSnapshot], bool], timeout: float
    ) -> TerminalSnapshot:
        """Block until `predicate(snapshot)` holds and return that snapshot.

        Raises `TimeoutError` after `timeout` seconds, and `RuntimeError` if the simulator stops
        first.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._finished or predicate(self._snapshot), timeout)
            if predicate(self._snapshot):
                return self._snapshot
            if self._finished:
                raise RuntimeError(f"terminal simulator {self.device} stopped") from self._failure
            raise TimeoutError(
                f"terminal simulator {self.device}: condition not met in {timeout} s"
            )

    def wait_for_display(
        self, predicate: Callable[[Display], bool] = _any_display, timeout: float = 5.0
    ) -> Display:
        """Return the earliest display not yet returned here that satisfies `predicate`.

        It may have arrived before the call (so there is no race with a fast gateway); it is then
        marked as returned, and displays it passed over stay available to later calls. Raises
        `TimeoutError` after `timeout` seconds, and `RuntimeError` if the simulator stops first
        with no such display.
        """
        found: list[int] = []

        def scan() -> bool:
            for index, display in enumerate(self._displays):
                if not self._taken[index] and predicate(display):
                    found[:] = [index]
                    return True
            return False

        with self._changed:
            self._changed.wait_for(lambda: scan() or self._finished, timeout)
            if found or scan():
                index = found[0]
                self._taken[index] = True
                return self._displays[index]
            if self._finished:
                raise RuntimeError(f"terminal simulator {self.device} stopped") from self._failure
            raise TimeoutError(f"terminal simulator {self.device}: no such display in {timeout} s")

    def type_code(self, code: str) -> str:
        """Type a pickup code (6..8 digits) and confirm it; returns the event id."""
        return self._send_event(KeypadEvent(id=self._next_id(), text=code))

    def request_deposit(self, size: LockerSize | str, unit: str) -> str:
        """Choose a compartment size and a recipient unit for a deposit; returns the event id."""
        try:
            locker_size = LockerSize(size)
        except ValueError:
            raise TerminalProfileError(
                ErrorReason.UNKNOWN_VALUE, "expected mini, S, M or L", field="size"
            ) from None
        return self._send_event(DepositEvent(id=self._next_id(), size=locker_size, unit=unit))

    def retry(self) -> str:
        """Ask to reopen the compartment of the waiting deposit; returns the event id."""
        return self._send_event(DepositRetryEvent(id=self._next_id()))

    def cancel(self) -> str:
        """Give up the waiting deposit; returns the event id."""
        return self._send_event(DepositCancelEvent(id=self._next_id()))

    def logout(self) -> str:
        """End the courier session; returns the event id."""
        return self._send_event(CourierLogoutEvent(id=self._next_id()))

    def show_image(self, data: bytes, fmt: FrameFormat | str) -> None:
        """Hold an image up to the camera: publish one frame (a whole JPEG or PNG file)."""
        try:
            frame_format = FrameFormat(fmt)
        except ValueError:
            raise TerminalProfileError(
                ErrorReason.UNKNOWN_VALUE, "expected jpeg or png", field="format"
            ) from None
        frame = Frame(self.device, frame_format, bytes(data))
        self._submit(lambda now: self._send(TopicKind.FRAME, frame.data))

    def publish_raw(self, kind: TopicKind, payload: bytes) -> None:
        """Publish `payload` unchecked on the ``event`` or ``frame`` topic (to test a gateway)."""
        topic_kind = TopicKind(kind)
        if topic_kind not in (TopicKind.EVENT, TopicKind.FRAME):
            raise ValueError("a terminal publishes raw payloads on its event or frame topic only")
        data = bytes(payload)
        self._submit(lambda now: self._send(topic_kind, data))

    def set_connected(self, connected: bool) -> None:
        """Cut the TCP connection without DISCONNECT (the last will fires), or reconnect."""
        self._submit(lambda now: self._apply_connected(connected, now))

    def start(self) -> None:
        """Start the worker thread; it connects to the broker and keeps reconnecting."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("a TerminalSimulator can be started only once")
            wake_r, wake_w = socket.socketpair()
            wake_r.setblocking(False)
            wake_w.setblocking(False)
            self._wake_r, self._wake_w = wake_r, wake_w
            self._thread = threading.Thread(
                target=self._run, name=f"terminal-sim-{self.device}", daemon=True
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
                raise RuntimeError(f"terminal simulator {self.device} did not stop in {timeout} s")
        if self._failure is not None:
            raise RuntimeError(f"terminal simulator {self.device} failed") from self._failure

    def __enter__(self) -> TerminalSimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- cross-thread requests -----------------------------------------------------------------

    def _next_id(self) -> str:
        with self._lock:
            return f"{self._id_tag}-{next(self._id_counter)}"

    def _send_event(self, event: Event) -> str:
        payload = encode(event)
        self._submit(lambda now: self._send(TopicKind.EVENT, payload))
        return event.id

    def _submit(self, request: Callable[[float], None]) -> None:
        if not self._try_submit(request):
            raise RuntimeError(f"terminal simulator {self.device} is stopped")

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
            _log.exception("terminal simulator %s failed", self.device)
            self._failure = exc
        finally:
            self._teardown()

    def _loop(self) -> None:
        assert self._selector is not None
        link = self._mqtt()
        now = time.monotonic()
        self._reconnect_at = now
        while not (self._stopping and (not link.has_socket or now >= self._stop_deadline)):
            for key, mask in self._selector.select(self._timeout(now)):
                if key.data == _WAKE:
                    self._drain_wake()
                else:
                    link.on_ready_to_io(mask)
            now = time.monotonic()
            self._handle_inbox()
            self._run_requests(now)
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
        link = self._mqtt()
        if self._fresh_link_needed:
            # paho would resend unacknowledged publishes on the next connection: a code typed
            # minutes ago must not arrive now. A fresh client has nothing in flight.
            link.renew()
            self._fresh_link_needed = False
        try:
            link.connect()
        except OSError as exc:
            if not self._reported_down:
                _log.warning("terminal simulator %s cannot reach the broker: %s", self.device, exc)
                self._reported_down = True
            self._schedule_reconnect(now)
            return
        self._tick_at = now + _TICK_INTERVAL_S

    def _schedule_reconnect(self, now: float) -> None:
        # Jitter keeps a site's worth of terminals from reconnecting in lockstep.
        self._reconnect_at = now + self._backoff_s * random.uniform(0.8, 1.2)
        self._backoff_s = min(self._backoff_s * 2, _MAX_BACKOFF_S)

    def _apply_connected(self, connected: bool, now: float) -> None:
        if connected and not self._want_connected:
            self._backoff_s = _MIN_BACKOFF_S
            self._reconnect_at = now
        self._want_connected = connected

    def _begin_stop(self, now: float) -> None:
        self._stopping = True
        self._stop_deadline = now + _STOP_GRACE_S
        link = self._mqtt()
        if link.ready:
            payload = encode(TerminalOffline())
            self._offline_mid = link.publish(self._topics.state, payload, retain=True, watch=True)
        else:
            link.drop()

    def _send(self, kind: TopicKind, payload: bytes) -> None:
        link = self._mqtt()
        if not link.ready or self._stopping:
            self._dropped += 1
            return
        link.publish(self._topics.topic(kind), payload, retain=False)
        if kind is TopicKind.FRAME:
            self._frames_sent += 1
        else:
            self._events_sent += 1

    def _handle_inbox(self) -> None:
        # The link appends to this very list object (its on_message is `self._inbox.append`).
        inbox = self._inbox.copy()
        self._inbox.clear()
        for payload in inbox:
            try:
                display = parse_display(payload)
            except TerminalProfileError as exc:
                _log.warning("terminal simulator %s refused a display: %s", self.device, exc)
                self._refused += 1
                continue
            self._record(display)

    def _record(self, display: Display) -> None:
        if isinstance(display, SessionDisplay):
            self._courier, self._company = display.courier, display.company
        else:
            self._screen = display
        with self._changed:
            self._displays.append(display)
            self._taken.append(False)
            self._snapshot = self._take_snapshot(online=self._mqtt().ready)
            self._changed.notify_all()
        if self._on_display is not None:
            try:
                self._on_display(display)
            except Exception:
                _log.exception("terminal simulator %s: on_display failed", self.device)

    def _go_online(self) -> None:
        # Called by the link once the display subscription is acknowledged.
        self._backoff_s = _MIN_BACKOFF_S
        if self._reported_down:
            _log.info("terminal simulator %s is back on the broker", self.device)
            self._reported_down = False
        self._mqtt().publish(self._topics.state, encode(self._state), retain=True)

    def _connection_lost(self, reason: str) -> None:
        # Called by the link whenever its connection ends, wanted or not.
        self._fresh_link_needed = True
        self._courier, self._company = False, None
        if self._want_connected and not self._stopping:
            if not self._reported_down:
                _log.warning("terminal simulator %s lost the broker: %s", self.device, reason)
                self._reported_down = True
            self._schedule_reconnect(time.monotonic())

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def _take_snapshot(self, *, online: bool) -> TerminalSnapshot:
        return TerminalSnapshot(
            online=online,
            connected=self._want_connected,
            courier=self._courier,
            company=self._company,
            screen=self._screen,
            displays=len(self._displays),
            refused_displays=self._refused,
            events_sent=self._events_sent,
            frames_sent=self._frames_sent,
            dropped=self._dropped,
        )

    def _publish_snapshot(self) -> None:
        online = self._link is not None and self._link.ready
        with self._changed:
            snapshot = self._take_snapshot(online=online)
            if snapshot != self._snapshot:
                self._snapshot = snapshot
                self._changed.notify_all()

    def _teardown(self) -> None:
        if self._link is not None:
            try:
                self._link.drop()
            except Exception:
                _log.exception("terminal simulator %s: closing the MQTT socket failed", self.device)
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


# --- the console (``courtyard sim terminal``) ----------------------------------------------------

_HELP: Final = """\
commands:
  code DIGITS          type a pickup code (6..8 digits) and confirm it
  image PATH           hold a JPEG or PNG file up to the camera
  deposit SIZE UNIT    a courier deposit: SIZE mini|S|M|L, UNIT like 1-201
  retry | cancel       reopen / give up the deposit waiting for the courier
  logout               end the courier session
  help | quit"""


def describe_display(display: Display) -> str:
    """One line for a display message, as the console prints it."""
    if isinstance(display, SessionDisplay):
        if not display.courier:
            return "[session] courier session closed"
        company = f": {display.company}" if display.company is not None else ""
        return f"[session] courier session open{company}"
    details = []
    if display.compartment is not None:
        details.append(f"compartment {display.compartment}")
    if display.ref is not None:
        details.append(f"re {display.ref}")
    suffix = f"  ({', '.join(details)})" if details else ""
    return f"[{display.tone.value}] {display.text}{suffix}"


def _read_image(path: str) -> tuple[bytes, FrameFormat]:
    with Path(path).open("rb") as file:
        data = file.read(MAX_FRAME_BYTES + 1)
    if len(data) > MAX_FRAME_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FRAME_BYTES} bytes")
    kind = sniff_frame_format(data)
    if kind is None:
        raise ValueError(f"{path} is neither a JPEG nor a PNG file")
    return data, kind


def _console_command(simulator: TerminalSimulator, line: str, echo: Callable[[str], None]) -> bool:
    """Run one console line; False when the console should end."""
    words = line.split()
    if not words:
        return True
    verb, args = words[0].lower(), words[1:]
    if verb in ("quit", "exit"):
        return False
    if verb in ("help", "?"):
        echo(_HELP)
        return True
    arity = {"code": 1, "image": 1, "deposit": 2, "retry": 0, "cancel": 0, "logout": 0}
    if verb not in arity:
        echo(f"unknown command {verb!r}; try help")
        return True
    if len(args) != arity[verb]:
        echo(f"{verb} takes {arity[verb]} argument(s); try help")
        return True
    if not simulator.online:
        echo("offline: not sent (the terminal drops what it cannot send)")
        return True
    if verb == "image":
        data, kind = _read_image(args[0])
        simulator.show_image(data, kind)
        echo(f"sent frame ({len(data)} bytes, {kind.value})")
        return True
    actions: dict[str, Callable[[], str]] = {
        "code": lambda: simulator.type_code(args[0]),
        "deposit": lambda: simulator.request_deposit(args[0], args[1]),
        "retry": simulator.retry,
        "cancel": simulator.cancel,
        "logout": simulator.logout,
    }
    echo(f"sent {verb} {actions[verb]()}")
    return True


def run_console(
    device: str,
    *,
    lines: Iterable[str],
    echo: Callable[[str], None],
    host: str = "127.0.0.1",
    port: int = 1883,
    prefix: str = DEFAULT_PREFIX,
    protocol: MqttProtocol = MqttProtocol.V311,
    connect_timeout: float = 5.0,
) -> None:
    """Play terminal `device` from a line-oriented console until `lines` ends or says ``quit``.

    Each line is an action (see ``help``); every display the gateway sends is printed with `echo`
    as it arrives. Raises `TerminalProfileError` at once for a bad device name or prefix.
    """
    simulator = TerminalSimulator(
        device=device,
        host=host,
        port=port,
        prefix=prefix,
        protocol=protocol,
        on_display=lambda display: echo(describe_display(display)),
    )
    simulator.start()
    try:
        try:
            simulator.wait_for(lambda s: s.online, connect_timeout)
            echo(f"terminal {device} online on {host}:{port} under {prefix}/terminal/ (try help)")
        except TimeoutError:
            echo(f"terminal {device}: broker {host}:{port} not reachable yet; still trying")
        for line in lines:
            try:
                if not _console_command(simulator, line, echo):
                    break
            except (ValueError, OSError) as exc:  # TerminalProfileError is a ValueError
                echo(f"error: {exc}")
    finally:
        simulator.stop()
