"""The terminal simulator end to end on a real broker, against a stand-in gateway (paho)."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.terminal import (
    JPEG_MAGIC,
    MAX_FRAME_BYTES,
    PNG_MAGIC,
    CourierLogoutEvent,
    DepositCancelEvent,
    DepositEvent,
    DepositRetryEvent,
    Display,
    ErrorReason,
    Frame,
    FrameFormat,
    KeypadEvent,
    LockerSize,
    MqttProtocol,
    SessionDisplay,
    ShowDisplay,
    TerminalOffline,
    TerminalProfileError,
    TerminalSimulator,
    TerminalSnapshot,
    TerminalState,
    TerminalTopics,
    Tone,
    TopicKind,
    gateway_subscriptions,
    parse_event,
    parse_frame,
    parse_state,
    run_console,
)
from tests.conftest import BrokerInfo
from tests.devices.terminal.terminal_mqtt import TIMEOUT, Gateway, TerminalSite

JPEG = JPEG_MAGIC + b"\xe0\x00\x10JFIF\x00" + bytes(range(256)) + b"\xff\xd9"
PNG = PNG_MAGIC + b"\x00\x00\x00\rIHDR" + bytes(64)


def start_watched(
    site: TerminalSite, device: str = "term-a", **options: object
) -> tuple[TerminalSimulator, Gateway, TerminalTopics]:
    """Subscribe a gateway to every terminal of the site, then start a simulator for `device`."""
    topics = site.topics(device)
    gateway = site.gateway(*gateway_subscriptions(site.prefix))
    simulator = site.simulator(device, **options)
    simulator.start()
    assert gateway.state_until(topics, lambda s: s.online) == TerminalState(fw="sim-1.0")
    simulator.wait_for(lambda s: s.online, TIMEOUT)
    return simulator, gateway, topics


def is_show(display: Display) -> bool:
    return isinstance(display, ShowDisplay)


def test_keypad_code_is_answered_on_the_screen(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)

    event_id = simulator.type_code("01234567")

    received = gateway.next(topics.event)
    assert (received.qos, received.retain) == (1, False)
    assert parse_event(received.payload) == KeypadEvent(id=event_id, text="01234567")
    answer = ShowDisplay(text="Compartment 7 is open", tone=Tone.OK, ref=event_id, compartment=7)
    gateway.show(topics, answer)
    assert simulator.wait_for_display(timeout=TIMEOUT) == answer
    assert simulator.snapshot().screen == answer
    assert simulator.displays == (answer,)
    assert simulator.snapshot().events_sent == 1


def test_courier_flow_events_in_order_with_distinct_ids(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)
    gateway.show(topics, SessionDisplay.opened("SF Express"))
    simulator.wait_for(lambda s: s.courier, TIMEOUT)
    assert simulator.snapshot().company == "SF Express"

    ids = [
        simulator.request_deposit("M", "1-201"),
        simulator.retry(),
        simulator.cancel(),
        simulator.request_deposit(LockerSize.MINI, "B2-1102"),
        simulator.logout(),
    ]

    assert [gateway.event(topics) for _ in ids] == [
        DepositEvent(id=ids[0], size=LockerSize.M, unit="1-201"),
        DepositRetryEvent(id=ids[1]),
        DepositCancelEvent(id=ids[2]),
        DepositEvent(id=ids[3], size=LockerSize.MINI, unit="B2-1102"),
        CourierLogoutEvent(id=ids[4]),
    ]
    assert len(set(ids)) == len(ids)
    gateway.show(topics, SessionDisplay.closed())
    snapshot = simulator.wait_for(lambda s: not s.courier, TIMEOUT)
    assert snapshot.company is None
    assert simulator.wait_for_display(timeout=TIMEOUT) == SessionDisplay.opened("SF Express")
    assert simulator.wait_for_display(timeout=TIMEOUT) == SessionDisplay.closed()


def test_frames_arrive_byte_exact(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)
    largest = PNG + bytes(MAX_FRAME_BYTES - len(PNG))

    simulator.show_image(JPEG, FrameFormat.JPEG)
    simulator.show_image(largest, "png")

    received = gateway.next(topics.frame)
    assert (received.qos, received.retain, received.payload) == (1, False, JPEG)
    assert gateway.frame(topics) == Frame(topics.device, FrameFormat.PNG, largest)
    assert simulator.wait_for(lambda s: s.frames_sent == 2, TIMEOUT).events_sent == 0


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        (JPEG, FrameFormat.PNG, ErrorReason.BAD_FRAME),
        (PNG, "jpeg", ErrorReason.BAD_FRAME),
        (b"GIF89a" + bytes(10), FrameFormat.JPEG, ErrorReason.BAD_FRAME),
        (b"", FrameFormat.JPEG, ErrorReason.BAD_FRAME),
        (JPEG + bytes(MAX_FRAME_BYTES), FrameFormat.JPEG, ErrorReason.TOO_LARGE),
        (JPEG, "gif", ErrorReason.UNKNOWN_VALUE),
    ],
)
def test_bad_frames_raise_on_the_callers_thread(
    terminal_site: TerminalSite, data: bytes, fmt: FrameFormat | str, reason: ErrorReason
) -> None:
    simulator = terminal_site.simulator()
    with pytest.raises(TerminalProfileError) as caught:
        simulator.show_image(data, fmt)
    assert caught.value.reason is reason


def test_bad_actions_raise_and_publish_nothing(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)

    for code in ["12345", "123456789", "12 3456", "１２３４５６", ""]:
        with pytest.raises(TerminalProfileError) as caught:
            simulator.type_code(code)
        assert caught.value.field == "text"
    with pytest.raises(TerminalProfileError) as caught:
        simulator.request_deposit("XL", "1-201")
    assert (caught.value.reason, caught.value.field) == (ErrorReason.UNKNOWN_VALUE, "size")
    with pytest.raises(TerminalProfileError) as caught:
        simulator.request_deposit("S", "1/201")
    assert (caught.value.reason, caught.value.field) == (ErrorReason.BAD_FORMAT, "unit")

    good = simulator.type_code("123456")
    assert gateway.event(topics) == KeypadEvent(id=good, text="123456")
    assert gateway.pending(topics.event) == []


def test_wait_for_display_takes_each_display_once(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)
    first = ShowDisplay(text="Welcome", tone=Tone.INFO)
    second = ShowDisplay(text="Wrong code", tone=Tone.ERROR, ref="x-1")
    gateway.show(topics, first)
    gateway.show(topics, second)
    simulator.wait_for(lambda s: s.displays == 2, TIMEOUT)

    # Both arrived before anyone waited: nothing is missed, and passed-over displays stay.
    assert simulator.wait_for_display(lambda d: getattr(d, "ref", None) == "x-1") == second
    assert simulator.wait_for_display(is_show, TIMEOUT) == first
    with pytest.raises(TimeoutError):
        simulator.wait_for_display(is_show, 0.05)
    assert simulator.displays == (first, second)
    assert simulator.snapshot().screen == second


def test_a_display_sent_while_waiting_wakes_the_waiter(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)
    shown = ShowDisplay(text="Scan your QR code", tone=Tone.INFO)
    got: queue.Queue[Display] = queue.Queue()
    waiter = threading.Thread(target=lambda: got.put(simulator.wait_for_display(is_show, TIMEOUT)))
    waiter.start()

    gateway.show(topics, shown)

    waiter.join(TIMEOUT)
    assert got.get_nowait() == shown


def test_invalid_displays_are_refused_and_counted(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)

    gateway.publish(topics.display, b"\xff not json")
    gateway.publish(topics.display, b'{"v":1,"op":"show","text":"hi","tone":"ok","blink":true}')
    gateway.publish(topics.display, b'{"v":1,"op":"show","text":"\\u0007","tone":"ok"}')
    gateway.publish(topics.display, b'{"v":1,"op":"session","courier":false,"company":"X"}')
    gateway.show(topics, ShowDisplay(text="ok", tone=Tone.OK))

    snapshot = simulator.wait_for(lambda s: s.displays == 1, TIMEOUT)
    assert snapshot.refused_displays == 4
    assert simulator.displays == (ShowDisplay(text="ok", tone=Tone.OK),)


def test_cut_fires_the_retained_will_and_nothing_is_sent_late(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)
    gateway.show(topics, SessionDisplay.opened())
    simulator.wait_for(lambda s: s.courier, TIMEOUT)

    simulator.set_connected(False)

    assert gateway.state_until(topics, lambda s: not s.online) == TerminalOffline()
    snapshot = simulator.wait_for(lambda s: not s.online and not s.connected, TIMEOUT)
    assert not snapshot.courier  # the session went with the connection
    late = terminal_site.gateway(topics.state)
    retained = late.next(topics.state)
    assert retained.retain
    assert parse_state(retained.payload) == TerminalOffline()

    simulator.type_code("11111111")
    simulator.show_image(JPEG, FrameFormat.JPEG)
    simulator.wait_for(lambda s: s.dropped == 2, TIMEOUT)
    simulator.set_connected(True)

    assert gateway.state_until(topics, lambda s: s.online) == TerminalState(fw="sim-1.0")
    simulator.wait_for(lambda s: s.online, TIMEOUT)
    after = simulator.type_code("22222222")
    assert gateway.event(topics) == KeypadEvent(id=after, text="22222222")
    assert gateway.pending(topics.frame) == []
    assert simulator.snapshot().events_sent == 1


def test_raw_payloads_for_gateway_tests(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)

    simulator.publish_raw(TopicKind.EVENT, b'{"v":1,"id":"r-1","op":"keypad","text":"12"}')
    simulator.publish_raw(TopicKind.FRAME, b"BM not a png")

    with pytest.raises(TerminalProfileError) as caught:
        gateway.event(topics)
    assert (caught.value.reason, caught.value.message_id) == (ErrorReason.BAD_FORMAT, "r-1")
    with pytest.raises(TerminalProfileError) as caught:
        gateway.frame(topics)
    assert caught.value.reason is ErrorReason.BAD_FRAME
    with pytest.raises(ValueError, match="event or frame"):
        simulator.publish_raw(TopicKind.STATE, b"{}")


def test_on_display_callback_runs_and_cannot_kill_the_worker(terminal_site: TerminalSite) -> None:
    seen: list[Display] = []

    def callback(display: Display) -> None:
        seen.append(display)
        raise RuntimeError("a broken callback")

    simulator, gateway, topics = start_watched(terminal_site, on_display=callback)
    gateway.show(topics, ShowDisplay(text="one", tone=Tone.INFO))
    gateway.show(topics, ShowDisplay(text="two", tone=Tone.INFO))

    simulator.wait_for(lambda s: s.displays == 2, TIMEOUT)
    assert [d.text for d in seen if isinstance(d, ShowDisplay)] == ["one", "two"]


def test_stop_publishes_offline_and_disconnects(terminal_site: TerminalSite) -> None:
    simulator, gateway, topics = start_watched(terminal_site)

    simulator.stop()

    assert gateway.state_until(topics, lambda s: not s.online) == TerminalOffline()
    assert not simulator.online
    late = terminal_site.gateway(topics.state)
    assert parse_state(late.next(topics.state).payload) == TerminalOffline()
    simulator.stop()  # twice is harmless
    with pytest.raises(RuntimeError):
        simulator.type_code("123456")
    with pytest.raises(RuntimeError):
        simulator.wait_for_display(timeout=0.01)
    with pytest.raises(RuntimeError):
        simulator.wait_for(lambda s: s.online, 0.01)


def test_mqtt_v5(terminal_site: TerminalSite, broker: BrokerInfo) -> None:
    if broker.protocol != "5":
        pytest.skip("the embedded broker speaks MQTT 3.1.1 only")
    simulator, gateway, topics = start_watched(terminal_site, protocol=MqttProtocol.V5)

    event_id = simulator.type_code("87654321")

    assert gateway.event(topics) == KeypadEvent(id=event_id, text="87654321")
    gateway.show(topics, ShowDisplay(text="Thanks", tone=Tone.OK, ref=event_id))
    assert simulator.wait_for_display(timeout=TIMEOUT) == ShowDisplay(
        text="Thanks", tone=Tone.OK, ref=event_id
    )


def test_lifecycle_misuse(terminal_site: TerminalSite) -> None:
    simulator = terminal_site.simulator("idle")
    simulator.stop()  # never started: nothing to do
    simulator.start()
    with pytest.raises(RuntimeError):
        simulator.start()
    with pytest.raises(TerminalProfileError):
        TerminalSimulator(device="a/b")
    with pytest.raises(TerminalProfileError):
        TerminalSimulator(device="ok", prefix="site/#")


def test_unreachable_broker_keeps_retrying_and_still_stops() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with TerminalSimulator(device="term-a", port=port, prefix="nowhere") as simulator:
        with pytest.raises(TimeoutError):
            simulator.wait_for(lambda s: s.online, 0.3)
        simulator.type_code("123456")
        assert simulator.wait_for(lambda s: s.dropped == 1, TIMEOUT).events_sent == 0
    assert not simulator.online


# --- the console ----------------------------------------------------------------------------------


class Console:
    """`run_console` on a thread, fed line by line, its output collected."""

    def __init__(self, site: TerminalSite, device: str = "term-c") -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._output: list[str] = []
        self._printed = threading.Condition()
        self.topics = site.topics(device)
        self._thread = threading.Thread(
            target=run_console,
            args=(device,),
            kwargs={
                "lines": self._feed(),
                "echo": self._echo,
                "host": site.host,
                "port": site.port,
                "prefix": site.prefix,
            },
        )

    def _feed(self) -> Iterator[str]:
        while (line := self._lines.get()) is not None:
            yield line

    def _echo(self, text: str) -> None:
        with self._printed:
            self._output.append(text)
            self._printed.notify_all()

    def start(self) -> None:
        self._thread.start()

    def send(self, line: str) -> None:
        self._lines.put(line)

    def expect(self, fragment: str) -> str:
        """Wait for (and take) the first printed line containing `fragment`."""
        found: list[str] = []

        def scan() -> bool:
            found[:] = [line for line in self._output if fragment in line]
            return bool(found)

        with self._printed:
            assert self._printed.wait_for(scan, TIMEOUT), f"{fragment!r} not in {self._output}"
            self._output.remove(found[0])
            return found[0]

    def close(self) -> None:
        self._lines.put(None)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive()


def test_console_sends_actions_and_prints_displays(
    terminal_site: TerminalSite, tmp_path: Path
) -> None:
    gateway = terminal_site.gateway(*gateway_subscriptions(terminal_site.prefix))
    console = Console(terminal_site)
    topics = console.topics
    image = tmp_path / "qr.png"
    image.write_bytes(PNG)
    console.start()
    try:
        console.expect("online")
        console.send("help")
        console.expect("deposit SIZE UNIT")

        console.send("code 12345678")
        event = gateway.event(topics)
        assert isinstance(event, KeypadEvent)
        assert event.text == "12345678"
        assert console.expect("sent code") == f"sent code {event.id}"
        opened = ShowDisplay(
            text="Compartment 3 is open", tone=Tone.OK, ref=event.id, compartment=3
        )
        gateway.show(topics, opened)
        assert console.expect("Compartment 3") == (
            f"[ok] Compartment 3 is open  (compartment 3, re {event.id})"
        )

        console.send(f"image {image}")
        assert gateway.frame(topics) == Frame(topics.device, FrameFormat.PNG, PNG)
        console.expect("sent frame (")
        gateway.show(topics, SessionDisplay.opened("SF Express"))
        assert console.expect("[session]") == "[session] courier session open: SF Express"

        console.send("deposit M 1-201")
        deposit = gateway.event(topics)
        assert isinstance(deposit, DepositEvent)
        assert (deposit.size, deposit.unit) == (LockerSize.M, "1-201")
        console.send("retry")
        assert isinstance(gateway.event(topics), DepositRetryEvent)
        console.send("cancel")
        assert isinstance(gateway.event(topics), DepositCancelEvent)
        console.send("logout")
        assert isinstance(gateway.event(topics), CourierLogoutEvent)

        console.send("code 12")
        console.expect("error: bad_format")
        console.send("deposit XL 1-201")
        console.expect("error: unknown_value")
        console.send(f"image {tmp_path / 'missing.jpg'}")
        console.expect("error: ")
        console.send("dance")
        console.expect("unknown command")
        console.send("code")
        console.expect("takes 1 argument")
        console.send("quit")
        assert gateway.state_until(topics, lambda s: not s.online) == TerminalOffline()
    finally:
        console.close()
    assert gateway.pending(topics.event) == []


def test_console_started_without_a_broker_says_so() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    printed: list[str] = []
    run_console(
        "term-z",
        lines=["code 123456", "quit", "code 654321"],
        echo=printed.append,
        port=port,
        connect_timeout=0.2,
    )
    assert printed[0].startswith("terminal term-z: broker 127.0.0.1:")
    assert printed[1].startswith("offline: not sent")
    assert len(printed) == 2


def test_snapshot_type() -> None:
    simulator = TerminalSimulator(device="term-s")
    snapshot = simulator.snapshot()
    assert isinstance(snapshot, TerminalSnapshot)
    assert (snapshot.online, snapshot.connected, snapshot.courier, snapshot.screen) == (
        False,
        True,
        False,
        None,
    )
    assert simulator.topics == TerminalTopics("site", "term-s")
    assert parse_frame(JPEG, device="term-s").format is FrameFormat.JPEG
