"""The gateway's side of the locker terminals (docs/terminal-profile.md) on the site broker.

Each configured bank's terminal (``[[lockers]] terminal``) reports what people do; this module
decides, through :class:`gateway.parcels.Parcels`, and tells the terminal what to show:

* ``keypad`` → :meth:`Parcels.pickup_by_code`: "Compartment N is open", or "Wrong code" (whether
  a code exists is never revealed beyond that), or the lockout with the minutes left;
* a camera ``frame`` → :func:`gateway.qr_scan.decode_qr` in a worker thread, then
  :func:`cloud_sync.protocol.verify_token` with the cloud's keys: a pickup token for this bank
  opens its parcel's compartment (``via: "qr"``); a courier pass opens a courier session on the
  terminal (``session`` display); anything else is an error display;
* ``deposit`` / ``deposit_retry`` / ``deposit_cancel`` / ``courier_logout`` → only inside a
  courier session: an offline deposit (``via: "terminal"``, a fresh parcel id, the pass's account
  and company), the reopen or cancel of the courier's deposit waiting at this bank, the end of the
  session.

Rules kept (the profile's, for the gateway side):

* every event is answered with a ``show`` whose ``ref`` is its id — also one that does not parse,
  when its id is readable (an event without a readable id cannot be answered and is dropped);
  duplicates ``(device, id)`` are ignored (the last :data:`RECENT_IDS` ids per terminal);
* displays are never retained and are sent only while the site link is up (never late);
* frames: one decode per terminal at a time — a frame arriving while one is queued or being
  decoded is dropped — and a frame byte-identical to the previous one of the terminal within
  :data:`DUPLICATE_FRAME_S` is ignored;
* a courier session lasts until logout or :data:`SESSION_IDLE_S` without an event from the
  courier; when its terminal comes online again, the open session is sent again.

Events and frames are subscribed at **QoS 0**: the site link is a persistent session, and a
broker queues QoS 1 messages for a persistent session while the gateway is away — a code typed
minutes ago would then open a compartment now. At QoS 0 the broker queues nothing for an absent
gateway (Mosquitto's default, ``queue_qos0_messages false``); on a live LAN connection nothing is
lost, and a terminal that gets no answer says "try again" after 10 s. ``state`` stays QoS 1.

Each terminal has one worker (a supervised task, :meth:`TerminalService.tasks`) that takes its
events and frames in arrival order, so one person's actions never overtake each other; at most
:data:`MAX_QUEUED` wait (more are answered "busy"). Messages arrive on the site link's inbox,
which the daemon shares with the door driver (:meth:`TerminalService.handles`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from cloud_sync.protocol import (
    CourierPass,
    Message,
    MqttLink,
    PickupToken,
    Token,
    TokenRefusal,
    TokenRefused,
    verify_token,
)
from devices.terminal import (
    CourierLogoutEvent,
    DepositCancelEvent,
    DepositEvent,
    DepositRetryEvent,
    Display,
    Event,
    KeypadEvent,
    LockerSize,
    SessionDisplay,
    ShowDisplay,
    TerminalProfileError,
    TerminalState,
    TerminalTopics,
    Tone,
    TopicKind,
    encode,
    parse_event,
    parse_frame,
    parse_state,
    parse_topic,
)
from gateway.errors import ConfigError
from gateway.locker_banks import IN_DEPOSIT, CodeLockout
from gateway.metrics import GatewayMetrics
from gateway.parcels import DepositRequest, Opened, ParcelRefused, Parcels, Refusal
from gateway.qr_scan import QrScanError, decode_qr
from gateway.settings import CompartmentSize, LockerBankSettings
from trust import VerifyKey

__all__ = [
    "DUPLICATE_FRAME_S",
    "MAX_QUEUED",
    "RECENT_IDS",
    "SESSION_IDLE_S",
    "TerminalService",
]

log = structlog.get_logger(__name__)

RECENT_IDS: Final = 1024
"""Event ids remembered per terminal to drop QoS 1 redeliveries."""
DUPLICATE_FRAME_S: Final = 10.0
"""A frame byte-identical to the terminal's previous one within this long is a redelivery."""
SESSION_IDLE_S: Final = 300.0
"""A courier session ends after this long without an event from the courier."""
MAX_QUEUED: Final = 8
"""Events and frames waiting for one terminal's worker; more are answered "busy"."""

_SIZES: Final[Mapping[LockerSize, CompartmentSize]] = {
    LockerSize.MINI: "mini",
    LockerSize.S: "S",
    LockerSize.M: "M",
    LockerSize.L: "L",
}

# What a person at the terminal is told; never whether a code exists beyond "wrong code".
_WRONG_CODE: Final = "Wrong code"
_OFFLINE: Final = "The locker is not responding. Please try again later"
_JAMMED: Final = "The compartment did not open. Please contact the property office"
_BUSY: Final = "Busy, please try again"
_SHOW_COURIER_CARD: Final = "Show your courier pass to the camera first"
_NO_DEPOSIT: Final = "No deposit is waiting for you at this locker"
_INTERNAL: Final = "Something went wrong, please try again"
_REFUSALS: Final[Mapping[Refusal, str]] = {
    Refusal.NOT_FOUND: "No parcel to collect with this code",
    Refusal.ALREADY_CLAIMED: "This parcel is already being collected or was collected",
    Refusal.WRONG_CODE: _WRONG_CODE,
    Refusal.JAMMED: _JAMMED,
    Refusal.BOARD_OFFLINE: _OFFLINE,
    Refusal.DUPLICATE: _INTERNAL,
    Refusal.WRONG_STATE: _NO_DEPOSIT,
    Refusal.NOT_OVERDUE: "This parcel cannot be retrieved yet",
    Refusal.NOT_YOUR_PARCEL: "This parcel was not deposited by you",
}
_TOKEN_REFUSALS: Final[Mapping[TokenRefusal, str]] = {
    TokenRefusal.EXPIRED: "This code has expired",
    TokenRefusal.NOT_YET_VALID: "This code is not valid yet",
    TokenRefusal.WRONG_GATEWAY: "This code is for another locker",
}


def _minutes(ms: int) -> str:
    n = max(1, math.ceil(ms / 60_000))
    return f"{n} minute" if n == 1 else f"{n} minutes"


@dataclass
class _Session:
    """An open courier session on one terminal (a verified courier pass)."""

    account: int
    company: str
    expires_at: float
    """Monotonic seconds; pushed back by every event of the courier."""


@dataclass(frozen=True, slots=True)
class _FrameWork:
    data: bytes


_Work = Event | _FrameWork


@dataclass
class _Terminal:
    """One configured terminal: its bank, topics and what the gateway holds for it."""

    device: str
    bank: str
    topics: TerminalTopics
    queue: asyncio.Queue[_Work] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))
    recent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    online: bool | None = None
    session: _Session | None = None
    frame_pending: bool = False
    last_frame: tuple[bytes, float] | None = None
    last_deposit: str | None = None
    """The parcel of the last deposit made here (the one ``deposit_retry``/``cancel`` mean)."""

    def seen(self, event_id: str) -> bool:
        """Remember ``event_id``; whether it was already there."""
        if event_id in self.recent:
            return True
        self.recent[event_id] = None
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)
        return False


class TerminalService:
    """The terminals of every configured bank, on the site link; see the module docstring."""

    def __init__(
        self,
        banks: Sequence[LockerBankSettings],
        prefix: str,
        link: MqttLink,
        parcels: Parcels,
        keys: Mapping[str, VerifyKey],
        gateway_id: str,
        clock: Callable[[], int],
        metrics: GatewayMetrics,
        *,
        session_idle_s: float = SESSION_IDLE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: wall milliseconds for token windows (the gateway's never-backwards clock)."""
        self._prefix = prefix
        self._link = link
        self._parcels = parcels
        self._keys = dict(keys)
        self._gateway = gateway_id
        self._clock = clock
        self._metrics = metrics
        self._idle_s = session_idle_s
        self._monotonic = monotonic
        self._head = f"{prefix}/terminal/"
        self._terminals: dict[str, _Terminal] = {}
        for bank in banks:
            if bank.terminal is None:
                continue
            if bank.terminal in self._terminals:
                raise ConfigError(
                    "lockers.terminal",
                    f"terminal {bank.terminal!r} is named by banks"
                    f" {self._terminals[bank.terminal].bank!r} and {bank.id!r}",
                )
            self._terminals[bank.terminal] = _Terminal(
                bank.terminal, bank.id, TerminalTopics(prefix, bank.terminal)
            )
        rules = parcels.rules
        self._lockout = CodeLockout(
            attempts=rules.code_lockout_attempts,
            window_ms=rules.code_lockout_window_s * 1000,
            lockout_ms=rules.code_lockout_s * 1000,
            max_ms=rules.code_lockout_max_s * 1000,
        )
        self.counters: dict[str, int] = {
            "events": 0,
            "frames": 0,
            "duplicate_events": 0,
            "duplicate_frames": 0,
            "dropped_frames": 0,
            "busy": 0,
            "bad_messages": 0,
            "displays": 0,
            "displays_dropped": 0,
        }
        """What the terminals sent and what became of it (``/healthz``)."""

    # -- wiring --------------------------------------------------------------------------------

    def subscribe(self) -> None:
        """Subscribe to each configured terminal's event, frame (QoS 0) and state (QoS 1)."""
        for term in self._terminals.values():
            self._link.subscribe(term.topics.event, qos=0)
            self._link.subscribe(term.topics.frame, qos=0)
            self._link.subscribe(term.topics.state, qos=1)

    def handles(self, topic: str) -> bool:
        """Whether a site-link message on ``topic`` is for this service (not the doors')."""
        return topic.startswith(self._head)

    def tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """One worker per terminal, to supervise."""
        return [
            (f"terminal:{device}", functools.partial(self._work, term))
            for device, term in self._terminals.items()
        ]

    def health(self) -> dict[str, dict[str, Any]]:
        """Each terminal: whether it is online, whether a courier session is open."""
        names = {True: "online", False: "offline", None: "unknown"}
        return {
            device: {
                "state": names[term.online],
                "courier_session": term.session is not None,
            }
            for device, term in self._terminals.items()
        }

    # -- messages from the site ----------------------------------------------------------------

    def handle(self, message: Message) -> None:
        """Take one message from the site link (a terminal topic), then acknowledge it."""
        try:
            self._handle(message)
        finally:
            self._link.ack(message)

    def _handle(self, message: Message) -> None:
        try:
            topic = parse_topic(message.topic, self._prefix)
        except TerminalProfileError as exc:
            self._bad(message.topic, exc)
            return
        term = self._terminals.get(topic.device)
        if term is None:
            log.debug("terminal.unknown_device", topic=message.topic[:200])
            return
        if topic.kind is TopicKind.STATE:
            if message.payload:  # an empty retained message clears the topic
                self._on_state(term, message.payload)
            return
        if message.retain:
            # Events and frames are never retained: a retained one would replay at every
            # subscription. Not answered: nobody is waiting for it.
            self._bad(message.topic, None, "retained")
            return
        if topic.kind is TopicKind.EVENT:
            self._on_event(term, message.payload)
        elif topic.kind is TopicKind.FRAME:
            self._on_frame(term, message.payload)

    def _bad(self, topic: str, exc: TerminalProfileError | None, reason: str = "") -> None:
        self.counters["bad_messages"] += 1
        self._metrics.bad_messages.labels("terminal").inc()
        log.warning(
            "terminal.bad_message",
            topic=topic[:200],
            reason=exc.reason.value if exc is not None else reason,
            field=exc.field if exc is not None else None,
        )

    def _on_state(self, term: _Terminal, payload: bytes) -> None:
        try:
            state = parse_state(payload)
        except TerminalProfileError as exc:
            self._bad(term.topics.state, exc)
            return
        online = isinstance(state, TerminalState)
        if term.online is not online:
            log.info("terminal.online" if online else "terminal.offline", terminal=term.device)
        term.online = online
        if online and term.session is not None:
            # The terminal forgot the session with its connection; the gateway owns it.
            self._display(term, SessionDisplay.opened(term.session.company))

    def _on_event(self, term: _Terminal, payload: bytes) -> None:
        try:
            event = parse_event(payload)
        except TerminalProfileError as exc:
            self._bad(term.topics.event, exc)
            if exc.message_id is not None and not term.seen(exc.message_id):
                self._show(term, "Unreadable request, please try again", Tone.ERROR, exc.message_id)
            return
        if term.seen(event.id):
            self.counters["duplicate_events"] += 1
            log.debug("terminal.duplicate_event", terminal=term.device, id=event.id)
            return
        self.counters["events"] += 1
        try:
            term.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.counters["busy"] += 1
            self._show(term, _BUSY, Tone.ERROR, event.id)

    def _on_frame(self, term: _Terminal, payload: bytes) -> None:
        try:
            frame = parse_frame(payload, device=term.device)
        except TerminalProfileError as exc:
            self._bad(term.topics.frame, exc)
            self._show(term, "Could not read the picture, please try again", Tone.ERROR)
            return
        now = self._monotonic()
        digest = hashlib.sha256(frame.data).digest()
        last = term.last_frame
        if last is not None and last[0] == digest and now - last[1] < DUPLICATE_FRAME_S:
            self.counters["duplicate_frames"] += 1
            return
        term.last_frame = (digest, now)
        if term.frame_pending:
            self.counters["dropped_frames"] += 1  # one decode per terminal at a time
            return
        self.counters["frames"] += 1
        try:
            term.queue.put_nowait(_FrameWork(frame.data))
        except asyncio.QueueFull:
            self.counters["dropped_frames"] += 1
            return
        term.frame_pending = True

    # -- the worker ------------------------------------------------------------------------------

    async def _work(self, term: _Terminal) -> None:
        """Take one terminal's events and frames in order, forever (a supervised task)."""
        while True:
            session = term.session
            wait = None if session is None else max(0.0, session.expires_at - self._monotonic())
            try:
                async with asyncio.timeout(wait):
                    item = await term.queue.get()
            except TimeoutError:
                self._expire(term)
                continue
            try:
                await self._process(term, item)
            except Exception:
                log.exception("terminal.failed", terminal=term.device)
                ref = None if isinstance(item, _FrameWork) else item.id
                self._show(term, _INTERNAL, Tone.ERROR, ref)
            finally:
                if isinstance(item, _FrameWork):
                    term.frame_pending = False

    def _expire(self, term: _Terminal) -> None:
        session = term.session
        if session is not None and self._monotonic() >= session.expires_at:
            log.info("terminal.session_expired", terminal=term.device, courier=session.account)
            self._close_session(term)

    def _close_session(self, term: _Terminal) -> None:
        term.session = None
        term.last_deposit = None
        self._display(term, SessionDisplay.closed())

    async def _process(self, term: _Terminal, item: _Work) -> None:
        self._expire(term)
        if isinstance(item, _FrameWork):
            await self._frame(term, item.data)
        elif isinstance(item, KeypadEvent):
            await self._keypad(term, item)
        elif term.session is None:
            if isinstance(item, CourierLogoutEvent):
                self._display(term, SessionDisplay.closed())
                self._show(term, "Courier session ended", Tone.INFO, item.id)
            else:
                self._show(term, _SHOW_COURIER_CARD, Tone.ERROR, item.id)
        else:
            term.session.expires_at = self._monotonic() + self._idle_s
            if isinstance(item, DepositEvent):
                await self._deposit(term, term.session, item)
            elif isinstance(item, DepositRetryEvent):
                await self._retry(term, term.session, item)
            elif isinstance(item, DepositCancelEvent):
                self._cancel(term, term.session, item)
            elif isinstance(item, CourierLogoutEvent):
                log.info("terminal.logout", terminal=term.device, courier=term.session.account)
                self._close_session(term)
                self._show(term, "Courier session ended", Tone.OK, item.id)

    # -- pickup --------------------------------------------------------------------------------

    async def _keypad(self, term: _Terminal, event: KeypadEvent) -> None:
        try:
            opened = await self._parcels.pickup_by_code(term.bank, event.text)
        except ParcelRefused as refusal:
            self._show(term, self._code_refusal(term, refusal), Tone.ERROR, event.id)
            return
        self._opened(term, opened, event.id)

    def _code_refusal(self, term: _Terminal, refusal: ParcelRefused) -> str:
        now = self._parcels.banks.clock()
        if refusal.reason is Refusal.LOCKED_OUT:
            until = refusal.locked_until_ms or now
            return f"Too many wrong codes. Try again in {_minutes(until - now)}"
        if refusal.reason is Refusal.WRONG_CODE:
            with self._parcels.banks.store.transaction() as tx:
                until_ms = self._lockout.locked_until(tx, term.bank, now)
            if until_ms is not None:
                return f"{_WRONG_CODE}. Code entry is locked for {_minutes(until_ms - now)}"
            return _WRONG_CODE
        return _REFUSALS.get(refusal.reason, _INTERNAL)

    def _opened(self, term: _Terminal, opened: Opened, ref: str | None) -> None:
        text = f"Compartment {opened.compartment} is open"
        self._show(term, text, Tone.OK, ref, opened.compartment)

    async def _frame(self, term: _Terminal, data: bytes) -> None:
        try:
            texts = await asyncio.to_thread(decode_qr, data)
        except QrScanError as exc:
            log.info("terminal.frame_unusable", terminal=term.device, reason=exc.reason)
            self._show(term, "Could not read the picture, please try again", Tone.ERROR)
            return
        if not texts:
            text = "No code found. Hold the code steady in front of the camera"
            self._show(term, text, Tone.ERROR)
            return
        token, why = self._verify(texts)
        if isinstance(token, PickupToken):
            await self._qr_pickup(term, token)
        elif isinstance(token, CourierPass):
            self._open_session(term, token)
        else:
            log.info("terminal.token_refused", terminal=term.device, reason=why)
            refused = _TOKEN_REFUSALS.get(why) if why is not None else None
            self._show(term, refused or "This code is not valid here", Tone.ERROR)

    def _verify(self, texts: list[str]) -> tuple[Token | None, TokenRefusal | None]:
        """The first of ``texts`` that is a valid token; else the first refusal."""
        why: TokenRefusal | None = None
        now = self._clock()
        for text in texts:
            try:
                return verify_token(text, self._keys, self._gateway, now), None
            except TokenRefused as refused:
                why = why or refused.reason
        return None, why

    async def _qr_pickup(self, term: _Terminal, token: PickupToken) -> None:
        if token.bank != term.bank:
            self._show(term, "This code is for another locker", Tone.ERROR)
            return
        try:
            opened = await self._parcels.pickup(term.bank, token.parcel, "qr")
        except ParcelRefused as refusal:
            self._show(term, _REFUSALS.get(refusal.reason, _INTERNAL), Tone.ERROR)
            return
        self._opened(term, opened, None)

    # -- courier -------------------------------------------------------------------------------

    def _open_session(self, term: _Terminal, token: CourierPass) -> None:
        term.session = _Session(token.account, token.company, self._monotonic() + self._idle_s)
        term.last_deposit = None
        log.info("terminal.session_opened", terminal=term.device, courier=token.account)
        self._display(term, SessionDisplay.opened(token.company))

    async def _deposit(self, term: _Terminal, session: _Session, event: DepositEvent) -> None:
        size = _SIZES[event.size]
        request = DepositRequest(
            bank=term.bank,
            parcel=uuid.uuid4().hex,
            size=size,
            unit=event.unit,
            courier=session.account,
            company=session.company,
            via="terminal",
        )
        try:
            opened = await self._parcels.deposit(request)
        except ParcelRefused as refusal:
            if refusal.reason is Refusal.NO_FREE_COMPARTMENT:
                text = f"No free {size} compartment"
            elif refusal.reason is Refusal.JAMMED:
                text = "No compartment could be opened. Please contact the property office"
            else:
                text = _REFUSALS.get(refusal.reason, _INTERNAL)
            self._show(term, text, Tone.ERROR, event.id)
            return
        term.last_deposit = opened.parcel
        text = f"Put the parcel in compartment {opened.compartment} and close the door"
        self._show(term, text, Tone.OK, event.id, opened.compartment)

    def _waiting_deposit(self, term: _Terminal, session: _Session) -> str | None:
        """The courier's deposit waiting at this bank: the last one made here, else the latest."""
        banks = self._parcels.banks
        if term.last_deposit is not None:
            found = banks.parcel(term.last_deposit)
            if found is not None and found.state in IN_DEPOSIT:
                return found.id
        mine = [p for p in banks.parcels(term.bank, IN_DEPOSIT) if p.courier == session.account]
        return mine[-1].id if mine else None

    async def _retry(self, term: _Terminal, session: _Session, event: DepositRetryEvent) -> None:
        parcel = self._waiting_deposit(term, session)
        if parcel is None:
            self._show(term, _NO_DEPOSIT, Tone.ERROR, event.id)
            return
        try:
            opened = await self._parcels.reopen(term.bank, parcel)
        except ParcelRefused as refusal:
            self._show(term, _REFUSALS.get(refusal.reason, _INTERNAL), Tone.ERROR, event.id)
            return
        term.last_deposit = opened.parcel
        text = f"Compartment {opened.compartment} is open again: put the parcel in, close the door"
        self._show(term, text, Tone.OK, event.id, opened.compartment)

    def _cancel(self, term: _Terminal, session: _Session, event: DepositCancelEvent) -> None:
        parcel = self._waiting_deposit(term, session)
        if parcel is None:
            self._show(term, _NO_DEPOSIT, Tone.ERROR, event.id)
            return
        try:
            self._parcels.cancel(term.bank, parcel, "courier")
        except ParcelRefused as refusal:
            self._show(term, _REFUSALS.get(refusal.reason, _INTERNAL), Tone.ERROR, event.id)
            return
        term.last_deposit = None
        self._show(term, "Deposit cancelled", Tone.OK, event.id)

    # -- displays ------------------------------------------------------------------------------

    def _show(
        self,
        term: _Terminal,
        text: str,
        tone: Tone,
        ref: str | None = None,
        compartment: int | None = None,
    ) -> None:
        self._display(term, ShowDisplay(text=text, tone=tone, ref=ref, compartment=compartment))

    def _display(self, term: _Terminal, display: Display) -> None:
        """Publish ``display`` to the terminal now (never retained), or drop it if the link is
        down: a display delivered late would answer somebody who has left."""
        if not self._link.connected:
            self.counters["displays_dropped"] += 1
            log.warning("terminal.display_dropped", terminal=term.device)
            return
        self.counters["displays"] += 1
        self._link.publish_nowait(term.topics.display, encode(display), qos=1, retain=False)
