"""The locker terminal through a running gateway: keypad, camera frames, courier sessions.

A whole gateway runs (store, outbox, uplink to a fake cloud) with bank ``A`` on one simulated lock
board line (:func:`tests.gateway.harness.lock_board_line`) and its terminal played by a
:class:`~devices.terminal.TerminalSimulator` on the real broker. What is checked is what the wires
show: the displays the terminal receives, the 31H pulses that reach the simulated board, the
events the cloud receives.

* a typed pickup code opens its compartment (``parcel.picked_up`` via ``code``), a redelivered
  event is not answered twice;
* five wrong codes lock the keypad: the fifth answer says so, the right code is then refused, a
  QR pickup still works;
* a pickup QR opens its compartment once (via ``qr``); a second image of it, a token for another
  bank and a token the gateway does not trust are refused;
* a courier pass opens a session; a deposit in it opens a compartment of the size, and the parcel
  put in and the door closed make ``parcel.deposited`` (via ``terminal``); retry and cancel of an
  empty deposit; logout; the session is sent again when the terminal reconnects;
* without a session a deposit is refused and nothing opens;
* a code typed while the gateway was away is not delivered to it later (QoS 0 subscription);
* bad payloads are answered when their id is readable, counted always.

Unit-level, with a stub link and the locker site of :mod:`tests.gateway.locker_site`: frames
arriving while one is being decoded are dropped, a byte-identical frame within 10 s is ignored, and
a courier session ends after its idle time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest

from cloud_sync.protocol import Message, MqttLink
from cloud_sync.protocol.pickup_code import derive_code
from devices.terminal import (
    Display,
    MqttProtocol,
    SessionDisplay,
    ShowDisplay,
    TerminalSimulator,
    TerminalTopics,
    Tone,
    TopicKind,
    parse_display,
)
from gateway import Gateway, GatewayMetrics, GatewaySettings
from gateway.parcels import DepositRequest
from gateway.terminal import TerminalService
from tests.conftest import BrokerInfo
from tests.gateway.harness import (
    TIMEOUT,
    FakeCloud,
    code_key_file,
    lock_board_line,
    locker_overrides,
    now_ms,
    qr_png,
    token_text,
    unique,
)
from tests.gateway.locker_site import Cabinet, LockerSite, locker_site
from trust import SigningKey

COURIER = 77


@dataclass
class TerminalSite:
    """A running gateway with bank A, its terminal simulator, the board and a fake cloud."""

    settings: GatewaySettings
    gateway: Gateway
    cloud: FakeCloud
    sim: TerminalSimulator
    cabinet: Cabinet
    code_key: bytes
    cloud_key: SigningKey

    async def display(self, predicate: Callable[[Display], bool]) -> Display:
        """The next display (not returned before) satisfying ``predicate``."""
        return await asyncio.to_thread(self.sim.wait_for_display, predicate, TIMEOUT)

    async def answer(self, event_id: str) -> ShowDisplay:
        """The ``show`` answering event ``event_id``."""
        found = await self.display(lambda d: getattr(d, "ref", None) == event_id)
        assert isinstance(found, ShowDisplay)
        return found

    async def frame_answer(self) -> Display:
        """The next display answering a frame: a ``show`` without ``ref``, or a ``session``."""
        return await self.display(
            lambda d: isinstance(d, SessionDisplay) or getattr(d, "ref", 1) is None
        )

    def pulses(self, no: int) -> int:
        """31H frames that reached compartment ``no``'s lock (lock n is compartment n)."""
        with self.cabinet.hands() as board:
            return board.compartment(no).pulses

    def door_open(self, no: int) -> bool:
        with self.cabinet.hands() as board:
            return board.compartment(no).door_open

    def put_and_close(self, no: int) -> None:
        """The courier puts a parcel into open compartment ``no`` and shuts it."""
        with self.cabinet.hands() as board:
            board.put_parcel(no)
            board.close_door(no)

    def take_and_close(self, no: int) -> None:
        with self.cabinet.hands() as board:
            board.take_parcel(no)
            board.close_door(no)

    def close(self, no: int) -> None:
        with self.cabinet.hands() as board:
            board.close_door(no)

    async def deposited(self, size: str = "S", unit: str = "1-201") -> tuple[str, int]:
        """A parcel deposited by command (courier 42) and closed in: (parcel id, compartment)."""
        parcel = uuid.uuid4().hex
        request = DepositRequest(
            bank="A",
            parcel=parcel,
            size=size,  # type: ignore[arg-type]
            unit=unit,
            courier=42,
            company="SF Express",
        )
        opened = await self.gateway.parcels.deposit(request)
        self.put_and_close(opened.compartment)
        await self.cloud.wait_event("parcel.deposited", parcel=parcel)
        return parcel, opened.compartment

    def code(self, parcel: str) -> str:
        """The parcel's pickup code, as the cloud shows it to the recipient."""
        event = self.cloud.find("parcel.deposited", parcel=parcel)[0]
        digits = self.settings.parcels.code_digits
        return derive_code(self.code_key, parcel, event.data["code_n"], digits)

    def token(self, **kw: Any) -> str:
        return token_text(self.cloud_key, self.settings.id, **kw)


@pytest.fixture
async def terminal_site(
    broker: BrokerInfo,
    tmp_path: Path,
    gateway_settings: Callable[..., GatewaySettings],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
    start_gateway: Callable[..., Awaitable[Gateway]],
    cloud_key: SigningKey,
) -> AsyncIterator[TerminalSite]:
    device = unique("term")
    key_file, code_key = code_key_file(tmp_path / "parcel-keys")
    with lock_board_line() as (server, cabinet):
        settings = gateway_settings(**locker_overrides(server.url, key_file, terminal=device))
        cloud = await fake_cloud(settings)
        sim = TerminalSimulator(
            device=device,
            host=broker.host,
            port=broker.port,
            prefix=settings.site.prefix,
            protocol=MqttProtocol(broker.protocol),
        )
        sim.start()
        try:
            await asyncio.to_thread(sim.wait_for, lambda s: s.online, TIMEOUT)
            gw = await start_gateway(settings)
            site = TerminalSite(settings, gw, cloud, sim, cabinet, code_key, cloud_key)
            yield site
            await gw.stop()
        finally:
            await asyncio.to_thread(sim.stop)
            await _clear(broker, sim.topics.state)


async def _clear(broker: BrokerInfo, topic: str) -> None:
    link = MqttLink(broker.host, broker.port, unique("cleanup"), protocol=broker.protocol)  # type: ignore[arg-type]
    async with link:
        with contextlib.suppress(Exception):
            await link.wait_connected(TIMEOUT)
            async with asyncio.timeout(TIMEOUT):
                await link.publish(topic, b"", qos=1, retain=True)


# -- pickup ----------------------------------------------------------------------------------


async def test_a_typed_code_opens_its_compartment(terminal_site: TerminalSite) -> None:
    site = terminal_site
    parcel, no = await site.deposited("S")
    assert no == 5  # the smallest S compartment
    assert site.pulses(no) == 1  # the courier's open

    event_id = site.sim.type_code(site.code(parcel))
    shown = await site.answer(event_id)
    assert (shown.tone, shown.text, shown.compartment) == (
        Tone.OK,
        f"Compartment {no} is open",
        no,
    )
    assert site.pulses(no) == 2  # the 31H reached the board: exactly one open for the pickup
    assert site.door_open(no)
    picked = await site.cloud.wait_event("parcel.picked_up", parcel=parcel)
    assert picked.data["via"] == "code"
    assert picked.data["compartment"] == no
    assert picked.data["fee_state"] == "owed"

    # QoS 1 may deliver an event twice: the same event again is not answered (nor acted on).
    again = json.dumps(
        {"v": 1, "id": event_id, "op": "keypad", "text": site.code(parcel)}, separators=(",", ":")
    ).encode()
    site.sim.publish_raw(TopicKind.EVENT, again)
    later = site.sim.type_code("00000000")
    assert (await site.answer(later)).text == "Wrong code"
    assert [d for d in site.sim.displays if getattr(d, "ref", None) == event_id] == [shown]
    assert site.pulses(no) == 2


async def test_wrong_codes_lock_the_keypad(terminal_site: TerminalSite) -> None:
    site = terminal_site
    parcel, no = await site.deposited("M")
    code = site.code(parcel)
    wrong = [f"{(int(code) + n) % 10**8:08d}" for n in range(1, 6)]
    answers = []
    for attempt in wrong:
        answers.append(await site.answer(site.sim.type_code(attempt)))
    assert all(a.tone is Tone.ERROR and a.compartment is None for a in answers)
    assert [a.text for a in answers[:4]] == ["Wrong code"] * 4
    assert answers[4].text == "Wrong code. Code entry is locked for 10 minutes"

    # Locked: the right code is refused without being checked, and nothing opens.
    refused = await site.answer(site.sim.type_code(code))
    assert (refused.tone, refused.text) == (
        Tone.ERROR,
        "Too many wrong codes. Try again in 10 minutes",
    )
    assert site.pulses(no) == 1
    assert site.cloud.find("parcel.picked_up") == []

    # The QR still works during a lockout.
    site.sim.show_image(qr_png(site.token(parcel=parcel)), "png")
    shown = await site.frame_answer()
    assert isinstance(shown, ShowDisplay)
    assert (shown.tone, shown.compartment) == (Tone.OK, no)
    assert (await site.cloud.wait_event("parcel.picked_up", parcel=parcel)).data["via"] == "qr"


async def test_a_pickup_qr_opens_its_compartment_once(terminal_site: TerminalSite) -> None:
    site = terminal_site
    parcel, no = await site.deposited("L")
    assert no == 15
    token = site.token(parcel=parcel)
    site.sim.show_image(qr_png(token), "png")
    shown = await site.frame_answer()
    assert isinstance(shown, ShowDisplay)
    assert (shown.tone, shown.text, shown.compartment, shown.ref) == (
        Tone.OK,
        f"Compartment {no} is open",
        no,
        None,
    )
    assert site.pulses(no) == 2
    picked = await site.cloud.wait_event("parcel.picked_up", parcel=parcel)
    assert picked.data["via"] == "qr"

    # Single use: the same token, photographed again (other bytes), opens nothing.
    site.sim.show_image(qr_png(token, scale=7), "png")
    again = await site.frame_answer()
    assert isinstance(again, ShowDisplay)
    assert again.tone is Tone.ERROR
    assert again.text == "This parcel is already being collected or was collected"

    # A token of another bank, one signed by a key the gateway does not trust, an expired one.
    other, _ = await site.deposited("S")
    for text, expected in (
        (site.token(parcel=other, bank="B"), "This code is for another locker"),
        (
            token_text(SigningKey.generate(), site.settings.id, parcel=other),
            "This code is not valid here",
        ),
        (site.token(parcel=other, lifetime_ms=1), "This code has expired"),
        ("just some text", "This code is not valid here"),
    ):
        site.sim.show_image(qr_png(text), "png")
        refused = await site.frame_answer()
        assert isinstance(refused, ShowDisplay)
        assert (refused.tone, refused.text) == (Tone.ERROR, expected)
    assert site.pulses(5) == 1  # the other parcel's compartment opened only for its deposit
    assert site.pulses(no) == 2


# -- courier ---------------------------------------------------------------------------------


async def _open_session(site: TerminalSite, company: str = "SF Express") -> None:
    site.sim.show_image(qr_png(site.token(courier=COURIER, company=company)), "png")
    session = await site.frame_answer()
    assert session == SessionDisplay(courier=True, company=company)
    await asyncio.to_thread(site.sim.wait_for, lambda s: s.courier, TIMEOUT)


async def test_a_courier_pass_opens_a_session_for_a_deposit(terminal_site: TerminalSite) -> None:
    site = terminal_site
    await _open_session(site)
    assert site.gateway.terminals.health()[site.sim.device]["courier_session"] is True

    event_id = site.sim.request_deposit("M", "1-201")
    shown = await site.answer(event_id)
    assert (shown.tone, shown.compartment) == (Tone.OK, 11)
    assert shown.text == "Put the parcel in compartment 11 and close the door"
    assert site.pulses(11) == 1
    assert site.door_open(11)

    site.put_and_close(11)
    deposited = await site.cloud.wait_event("parcel.deposited", compartment=11)
    data = deposited.data
    assert (data["bank"], data["size"], data["unit"], data["via"]) == (
        "A",
        "M",
        "1-201",
        "terminal",
    )
    assert (data["courier"], data["company"]) == (COURIER, "SF Express")
    assert len(data["parcel"]) == 32

    logout = site.sim.logout()
    closed = await site.display(lambda d: isinstance(d, SessionDisplay))
    assert closed == SessionDisplay(courier=False)
    assert (await site.answer(logout)).text == "Courier session ended"
    await asyncio.to_thread(site.sim.wait_for, lambda s: not s.courier, TIMEOUT)

    # The session is gone: another deposit is refused.
    refused = await site.answer(site.sim.request_deposit("S", "1-201"))
    assert (refused.tone, refused.text) == (
        Tone.ERROR,
        "Show your courier pass to the camera first",
    )
    assert site.pulses(5) == 0


async def test_an_empty_deposit_is_retried_then_cancelled(terminal_site: TerminalSite) -> None:
    site = terminal_site
    await _open_session(site)
    assert (await site.answer(site.sim.request_deposit("S", "2-101"))).compartment == 5
    site.close(5)  # shut with nothing inside
    empty = await site.cloud.wait_event("parcel.deposit_empty", compartment=5)
    parcel = empty.data["parcel"]

    retry = await site.answer(site.sim.retry())
    assert (retry.tone, retry.compartment) == (Tone.OK, 5)
    assert site.pulses(5) == 2
    site.close(5)
    await site.cloud.wait_for(lambda c: len(c.find("parcel.deposit_empty", parcel=parcel)) == 2)

    cancelled = await site.answer(site.sim.cancel())
    assert (cancelled.tone, cancelled.text) == (Tone.OK, "Deposit cancelled")
    event = await site.cloud.wait_event("parcel.cancelled", parcel=parcel)
    assert event.data["reason"] == "courier"
    nothing = await site.answer(site.sim.cancel())
    assert (nothing.tone, nothing.text) == (
        Tone.ERROR,
        "No deposit is waiting for you at this locker",
    )
    assert site.cloud.find("parcel.deposited") == []


async def test_no_deposit_without_a_courier_session(terminal_site: TerminalSite) -> None:
    site = terminal_site
    for send in (
        lambda: site.sim.request_deposit("M", "1-201"),
        site.sim.retry,
        site.sim.cancel,
    ):
        refused = await site.answer(send())
        assert (refused.tone, refused.text) == (
            Tone.ERROR,
            "Show your courier pass to the camera first",
        )
    assert all(site.pulses(no) == 0 for no in range(1, 17))
    assert site.cloud.find("parcel.deposited") == []


async def test_the_session_is_sent_again_when_the_terminal_reconnects(
    terminal_site: TerminalSite,
) -> None:
    site = terminal_site
    await _open_session(site, company="顺丰速运")
    site.sim.set_connected(False)
    await asyncio.to_thread(site.sim.wait_for, lambda s: not s.online and not s.courier, TIMEOUT)
    site.sim.set_connected(True)
    again = await site.display(lambda d: isinstance(d, SessionDisplay))
    assert again == SessionDisplay(courier=True, company="顺丰速运")
    await asyncio.to_thread(site.sim.wait_for, lambda s: s.online and s.courier, TIMEOUT)


async def test_a_code_typed_while_the_gateway_was_away_is_never_acted_on(
    terminal_site: TerminalSite, start_gateway: Callable[..., Awaitable[Gateway]]
) -> None:
    site = terminal_site
    parcel, no = await site.deposited("S")
    await site.gateway.stop()
    # The terminal is online and the broker up; the gateway's persistent site session is not.
    stale = site.sim.type_code(site.code(parcel))
    await asyncio.to_thread(site.sim.wait_for, lambda s: s.events_sent >= 1, TIMEOUT)
    site.gateway = await start_gateway(site.settings)
    # Anything the broker had kept for the gateway's session comes before this event.
    fresh = site.sim.type_code("00000000")
    assert (await site.answer(fresh)).text == "Wrong code"
    assert [d for d in site.sim.displays if getattr(d, "ref", None) == stale] == []
    assert site.pulses(no) == 1
    assert site.cloud.find("parcel.picked_up") == []


# -- hostile input ---------------------------------------------------------------------------


async def test_bad_payloads_are_answered_when_they_can_be(terminal_site: TerminalSite) -> None:
    site = terminal_site
    sim = site.sim
    sim.publish_raw(TopicKind.EVENT, b'{"v":1,"id":"bad-1","op":"keypad","text":"12"}')
    shown = await site.answer("bad-1")
    assert shown.tone is Tone.ERROR
    sim.publish_raw(TopicKind.EVENT, b"not json at all")  # no id: cannot be answered
    sim.publish_raw(TopicKind.FRAME, b"GIF89a not an image we take")
    frame = await site.frame_answer()
    assert isinstance(frame, ShowDisplay)
    assert (frame.tone, frame.text) == (Tone.ERROR, "Could not read the picture, please try again")
    # A PNG that decodes but holds no code.
    sim.show_image(_blank_png(), "png")
    nothing = await site.frame_answer()
    assert isinstance(nothing, ShowDisplay)
    assert nothing.text == "No code found. Hold the code steady in front of the camera"
    # Every message so far was processed in order before this one's answer.
    await site.answer(sim.type_code("12345678"))
    counters = site.gateway.terminals.counters
    assert counters["bad_messages"] == 3
    health = site.gateway.health()
    assert health["lockers"]["A"]["terminal"] == {
        "device": sim.device,
        "state": "online",
        "courier_session": False,
    }
    assert health["terminal_messages"]["bad_messages"] == 3


def _blank_png() -> bytes:
    ok, data = cv2.imencode(".png", np.full((120, 160), 200, dtype=np.uint8))
    assert ok
    return bytes(data)


# -- unit level: frames and session time-outs ------------------------------------------------


class _StubLink:
    """What :class:`TerminalService` uses of an MqttLink, recording the displays."""

    def __init__(self) -> None:
        self.connected = True
        self.published: list[tuple[str, Display]] = []
        self.changed = asyncio.Event()

    def subscribe(self, pattern: str, qos: int = 1) -> None:
        pass

    def ack(self, message: Message) -> None:
        pass

    def publish_nowait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None:
        assert not retain
        self.published.append((topic, parse_display(payload)))
        self.changed.set()

    async def wait(self, count: int) -> list[Display]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.published) < count:
                self.changed.clear()
                await self.changed.wait()
        return [d for _, d in self.published]


class _Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def _service(
    site: LockerSite, cloud_key: SigningKey, **kw: Any
) -> AsyncIterator[tuple[TerminalService, _StubLink, TerminalTopics]]:
    link = _StubLink()
    service = TerminalService(
        site.settings.lockers,
        "site",
        cast(MqttLink, link),
        site.parcels,
        {cloud_key.kid: cloud_key.verify_key},
        site.settings.id,
        site.clock,
        GatewayMetrics(),
        **kw,
    )
    ((_, worker),) = service.tasks()
    task = asyncio.create_task(worker())
    try:
        yield service, link, TerminalTopics("site", "term-a")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _message(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 0, False, 0)


async def test_frames_while_busy_are_dropped_and_repeats_ignored(
    tmp_path: Path, cloud_key: SigningKey
) -> None:
    async with locker_site(tmp_path) as site:
        site.clock.now = now_ms()
        clock = _Monotonic()
        async with _service(site, cloud_key, monotonic=clock) as (service, link, topics):
            pass_png = qr_png(token_text(cloud_key, site.settings.id, courier=COURIER))
            other_png = qr_png(token_text(cloud_key, site.settings.id, courier=COURIER + 1))
            service.handle(_message(topics.frame, pass_png))
            service.handle(_message(topics.frame, other_png))  # the first is still queued
            assert service.counters["dropped_frames"] == 1
            (first,) = await link.wait(1)
            assert first == SessionDisplay(courier=True, company="SF Express")
            clock.now += 5
            # The dropped frame again, byte for byte: the previous frame redelivered, ignored.
            service.handle(_message(topics.frame, other_png))
            assert service.counters["duplicate_frames"] == 1
            clock.now += 6  # 11 s after it: a new look at the same card
            service.handle(_message(topics.frame, other_png))
            _, second = await link.wait(2)
            assert second == SessionDisplay(courier=True, company="SF Express")
            assert service.health()["term-a"]["courier_session"] is True
            assert service.counters["frames"] == 2


async def test_a_courier_session_ends_when_idle(tmp_path: Path, cloud_key: SigningKey) -> None:
    async with locker_site(tmp_path) as site:
        site.clock.now = now_ms()
        pass_png = qr_png(token_text(cloud_key, site.settings.id, courier=COURIER))
        # Ended by the worker's timer.
        async with _service(site, cloud_key, session_idle_s=0.2) as (service, link, topics):
            service.handle(_message(topics.frame, pass_png))
            opened, closed = await link.wait(2)
            assert opened == SessionDisplay(courier=True, company="SF Express")
            assert closed == SessionDisplay(courier=False)
            assert service.health()["term-a"]["courier_session"] is False
        # Found ended when the courier's next event arrives.
        clock = _Monotonic()
        async with _service(site, cloud_key, monotonic=clock) as (service, link, topics):
            service.handle(_message(topics.frame, pass_png))
            await link.wait(1)
            clock.now += 301
            deposit = b'{"v":1,"id":"d-1","op":"deposit","size":"S","unit":"1-201"}'
            service.handle(_message(topics.event, deposit))
            _, closed, refused = await link.wait(3)
            assert closed == SessionDisplay(courier=False)
            assert isinstance(refused, ShowDisplay)
            assert (refused.ref, refused.text) == (
                "d-1",
                "Show your courier pass to the camera first",
            )
            assert site.pulses(2) == 0
