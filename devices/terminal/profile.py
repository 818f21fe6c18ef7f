"""The locker terminal profile, version 1: typed messages, frames and their codec (sans-I/O).

A locker bank's terminal (keypad, camera, small screen) and the gateway talk over MQTT (topics live
in `devices.terminal.topics`). The terminal reports what people do; the gateway decides and tells
it what to show. This module only turns messages into bytes and bytes into messages; it never
touches a socket, and it never decodes an image.

* `encode(message)` gives compact JSON bytes (ASCII, no spaces, fixed key order).
* `parse_event`, `parse_display` and `parse_state` take the payload of one topic each and return a
  frozen, slotted dataclass, or raise `TerminalProfileError` — nothing else, whatever the bytes.
* `parse_frame` checks one camera frame's size and magic bytes and returns a `Frame`; the image
  itself is decoded elsewhere (the gateway), never here.

Every dataclass validates itself in ``__post_init__``, so an invalid message cannot be built on
either side of the wire. Payloads are hostile until parsed: size-bounded before any decoding, UTF-8
JSON objects with ``"v": 1``, no repeated keys, every field type- and range-checked, and — unlike
the door profile — **unknown keys are refused**: this profile is small and strict, and a new field
means a new ``v``.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, NoReturn, TypeAlias, TypeVar

from devices.terminal.errors import ErrorReason, TerminalProfileError

__all__ = [
    "JPEG_MAGIC",
    "MAX_COMPANY_CHARS",
    "MAX_COMPARTMENT",
    "MAX_DISPLAY_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_STATE_BYTES",
    "MAX_TEXT_CHARS",
    "MAX_UNIT_CHARS",
    "MIN_COMPARTMENT",
    "PNG_MAGIC",
    "PROFILE_VERSION",
    "CourierLogoutEvent",
    "DepositCancelEvent",
    "DepositEvent",
    "DepositRetryEvent",
    "Display",
    "DisplayOp",
    "Event",
    "EventOp",
    "Frame",
    "FrameFormat",
    "KeypadEvent",
    "LockerSize",
    "Message",
    "Payload",
    "SessionDisplay",
    "ShowDisplay",
    "TerminalOffline",
    "TerminalState",
    "Tone",
    "encode",
    "is_valid_device",
    "is_valid_message_id",
    "parse_display",
    "parse_event",
    "parse_frame",
    "parse_state",
    "sniff_frame_format",
]

PROFILE_VERSION: Final = 1
"""The value of ``"v"`` in every JSON message of this profile."""

MAX_EVENT_BYTES: Final = 1024
"""Event payloads longer than this are refused before they are decoded."""

MAX_DISPLAY_BYTES: Final = 4096
"""Display payloads longer than this are refused before they are decoded."""

MAX_STATE_BYTES: Final = 1024
"""State payloads longer than this are refused before they are decoded."""

MAX_FRAME_BYTES: Final = 512 * 1024
"""A camera frame is at most 512 KiB."""

MAX_TEXT_CHARS: Final = 200
MAX_COMPANY_CHARS: Final = 64
"""The same bound as a courier pass's company (``cloud_sync.protocol.tokens``)."""
MAX_UNIT_CHARS: Final = 40
MIN_COMPARTMENT: Final = 1
MAX_COMPARTMENT: Final = 255

JPEG_MAGIC: Final = b"\xff\xd8\xff"
"""The first bytes of every JPEG file (SOI marker, then the first segment's marker)."""

PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
"""The eight-byte PNG signature."""

# fullmatch() is used with these, so a trailing newline cannot slip through as it would with `$`.
_MESSAGE_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
_DEVICE_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CODE_PATTERN: Final = re.compile(r"[0-9]{6,8}")
_UNIT_PATTERN: Final = re.compile(r"[0-9A-Za-z-]{1,40}")
_FW_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")


class EventOp(enum.StrEnum):
    """What a terminal reports on its ``event`` topic."""

    KEYPAD = "keypad"
    DEPOSIT = "deposit"
    DEPOSIT_RETRY = "deposit_retry"
    DEPOSIT_CANCEL = "deposit_cancel"
    COURIER_LOGOUT = "courier_logout"


class LockerSize(enum.StrEnum):
    """A compartment size, as in the locker model of ``docs/parcels.md``."""

    MINI = "mini"
    S = "S"
    M = "M"
    L = "L"


class DisplayOp(enum.StrEnum):
    """What the gateway sends on a terminal's ``display`` topic."""

    SHOW = "show"
    SESSION = "session"


class Tone(enum.StrEnum):
    """How a shown message sounds and looks: success, failure or plain information."""

    OK = "ok"
    ERROR = "error"
    INFO = "info"


class FrameFormat(enum.StrEnum):
    """The image formats a camera frame may be in."""

    JPEG = "jpeg"
    PNG = "png"


_MAGIC: Final[dict[FrameFormat, bytes]] = {FrameFormat.JPEG: JPEG_MAGIC, FrameFormat.PNG: PNG_MAGIC}


def is_valid_message_id(value: object) -> bool:
    """Tell whether `value` is a valid event id (or ``ref``): 1..32 of ``[A-Za-z0-9_-]``."""
    return type(value) is str and _MESSAGE_ID_PATTERN.fullmatch(value) is not None


def is_valid_device(value: object) -> bool:
    """Tell whether `value` is a valid terminal device name: 1..64 of ``[A-Za-z0-9_.:-]``."""
    return type(value) is str and _DEVICE_PATTERN.fullmatch(value) is not None


def _fail(reason: ErrorReason, field: str, detail: str = "") -> NoReturn:
    raise TerminalProfileError(reason, detail, field=field)


def _check_str(value: object, field: str) -> str:
    if type(value) is not str:
        _fail(ErrorReason.BAD_TYPE, field, "expected a string")
    return value


def _check_pattern(value: object, field: str, pattern: re.Pattern[str], expected: str) -> None:
    if pattern.fullmatch(_check_str(value, field)) is None:
        _fail(ErrorReason.BAD_FORMAT, field, f"expected {expected}")


def _check_message_id(value: object, field: str) -> None:
    _check_pattern(value, field, _MESSAGE_ID_PATTERN, "1..32 characters of [A-Za-z0-9_-]")


def _check_screen_text(value: object, field: str, limit: int) -> None:
    text = _check_str(value, field)
    # isprintable() refuses control, format, surrogate, private-use, unassigned and separator
    # characters other than the ASCII space: nothing that could move the cursor or spoof the
    # screen. The same rule as a courier pass's company name, so every company can be shown.
    if not 1 <= len(text) <= limit or not text.isprintable():
        _fail(ErrorReason.BAD_FORMAT, field, f"expected 1..{limit} printable characters")


def _check_int(value: object, field: str, low: int, high: int) -> None:
    # `type(...) is int` rather than isinstance: True and False are ints to Python, not to us.
    if type(value) is not int:
        _fail(ErrorReason.BAD_TYPE, field, "expected an integer")
    if not low <= value <= high:
        _fail(ErrorReason.OUT_OF_RANGE, field, f"expected {low}..{high}")


def _check_bool(value: object, field: str) -> None:
    if type(value) is not bool:
        _fail(ErrorReason.BAD_TYPE, field, "expected true or false")


def _check_member(value: object, kind: type[enum.StrEnum], field: str) -> None:
    if not isinstance(value, kind):
        _fail(ErrorReason.BAD_TYPE, field, f"expected a {kind.__name__}")


# --- events (terminal -> gateway) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypadEvent:
    """A pickup code typed on the keypad and confirmed (op ``keypad``): 6..8 ASCII digits."""

    id: str
    text: str

    op: ClassVar[EventOp] = EventOp.KEYPAD

    def __post_init__(self) -> None:
        _check_message_id(self.id, "id")
        _check_pattern(self.text, "text", _CODE_PATTERN, "6..8 digits 0-9")


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositEvent:
    """A courier chose a compartment size and a recipient unit (op ``deposit``)."""

    id: str
    size: LockerSize
    unit: str

    op: ClassVar[EventOp] = EventOp.DEPOSIT

    def __post_init__(self) -> None:
        _check_message_id(self.id, "id")
        _check_member(self.size, LockerSize, "size")
        _check_pattern(self.unit, "unit", _UNIT_PATTERN, "1..40 characters of [0-9A-Za-z-]")


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositRetryEvent:
    """The courier asks to reopen the compartment of their waiting deposit (``deposit_retry``)."""

    id: str

    op: ClassVar[EventOp] = EventOp.DEPOSIT_RETRY

    def __post_init__(self) -> None:
        _check_message_id(self.id, "id")


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositCancelEvent:
    """The courier gives up the deposit waiting for them (op ``deposit_cancel``)."""

    id: str

    op: ClassVar[EventOp] = EventOp.DEPOSIT_CANCEL

    def __post_init__(self) -> None:
        _check_message_id(self.id, "id")


@dataclass(frozen=True, slots=True, kw_only=True)
class CourierLogoutEvent:
    """The courier ends their session at the terminal (op ``courier_logout``)."""

    id: str

    op: ClassVar[EventOp] = EventOp.COURIER_LOGOUT

    def __post_init__(self) -> None:
        _check_message_id(self.id, "id")


Event: TypeAlias = (
    KeypadEvent | DepositEvent | DepositRetryEvent | DepositCancelEvent | CourierLogoutEvent
)
"""Anything a terminal may send on its ``event`` topic."""

_BareEvent: TypeAlias = DepositRetryEvent | DepositCancelEvent | CourierLogoutEvent
_BARE_EVENTS: Final[dict[EventOp, type[_BareEvent]]] = {
    EventOp.DEPOSIT_RETRY: DepositRetryEvent,
    EventOp.DEPOSIT_CANCEL: DepositCancelEvent,
    EventOp.COURIER_LOGOUT: CourierLogoutEvent,
}


# --- displays (gateway -> terminal) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ShowDisplay:
    """Put `text` on the screen with a `tone` (op ``show``).

    `ref` is the id of the event this answers, if it answers one; `compartment` is the compartment
    the text is about (the one that just opened), if any.
    """

    text: str
    tone: Tone
    ref: str | None = None
    compartment: int | None = None

    op: ClassVar[DisplayOp] = DisplayOp.SHOW

    def __post_init__(self) -> None:
        _check_screen_text(self.text, "text", MAX_TEXT_CHARS)
        _check_member(self.tone, Tone, "tone")
        if self.ref is not None:
            _check_message_id(self.ref, "ref")
        if self.compartment is not None:
            _check_int(self.compartment, "compartment", MIN_COMPARTMENT, MAX_COMPARTMENT)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDisplay:
    """A courier session opened (`courier` true, after a courier pass was scanned) or closed.

    `company` is the courier's company from the pass, shown on the screen; only an open session
    has one.
    """

    courier: bool
    company: str | None = None

    op: ClassVar[DisplayOp] = DisplayOp.SESSION

    def __post_init__(self) -> None:
        _check_bool(self.courier, "courier")
        if self.company is not None:
            if not self.courier:
                _fail(ErrorReason.INCONSISTENT, "company", "a closed session has no company")
            _check_screen_text(self.company, "company", MAX_COMPANY_CHARS)

    @classmethod
    def opened(cls, company: str | None = None) -> SessionDisplay:
        """A courier session is open (optionally naming the courier's company)."""
        return cls(courier=True, company=company)

    @classmethod
    def closed(cls) -> SessionDisplay:
        """The courier session is over."""
        return cls(courier=False)


Display: TypeAlias = ShowDisplay | SessionDisplay
"""Anything the gateway may send on a terminal's ``display`` topic."""


# --- state (terminal -> everyone, retained) -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalState:
    """The retained state of an online terminal: it is connected and runs firmware `fw`."""

    fw: str

    def __post_init__(self) -> None:
        _check_pattern(self.fw, "fw", _FW_PATTERN, "1..64 characters of [A-Za-z0-9_.:+-]")

    @property
    def online(self) -> Literal[True]:
        """Always true: a terminal that publishes its state is online."""
        return True


@dataclass(frozen=True, slots=True)
class TerminalOffline:
    """The terminal's last will, retained on its ``state`` topic while it is unreachable."""

    @property
    def online(self) -> Literal[False]:
        """Always false."""
        return False


Message: TypeAlias = Event | Display | TerminalState | TerminalOffline
"""Every JSON message of the profile (frames are raw image bytes, see `Frame`)."""


# --- frames (terminal -> gateway, raw bytes) ------------------------------------------------------


def sniff_frame_format(data: bytes | bytearray | memoryview) -> FrameFormat | None:
    """The image format `data` starts like (by its magic bytes), or None."""
    head = bytes(data[: len(PNG_MAGIC)])
    for kind, magic in _MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class Frame:
    """One camera frame from terminal `device`: `data` is a whole JPEG or PNG file, undecoded.

    Only the size (1..`MAX_FRAME_BYTES`) and the magic bytes of `format` are checked; whether the
    image decodes, and what it shows, is for the gateway to find out.
    """

    device: str
    format: FrameFormat
    data: bytes

    def __post_init__(self) -> None:
        if not is_valid_device(self.device):
            _fail(ErrorReason.BAD_FORMAT, "device", "expected 1..64 characters of [A-Za-z0-9_.:-]")
        _check_member(self.format, FrameFormat, "format")
        if type(self.data) is not bytes:
            _fail(ErrorReason.BAD_TYPE, "data", "expected bytes")
        if len(self.data) > MAX_FRAME_BYTES:
            _fail(ErrorReason.TOO_LARGE, "data", f"{len(self.data)} > {MAX_FRAME_BYTES} bytes")
        if not self.data.startswith(_MAGIC[self.format]):
            _fail(ErrorReason.BAD_FRAME, "data", f"does not start like a {self.format.value}")

    @property
    def size(self) -> int:
        """The frame's length in bytes."""
        return len(self.data)

    def __repr__(self) -> str:
        return f"Frame(device={self.device!r}, format={self.format!r}, size={self.size})"


Payload: TypeAlias = bytes | bytearray | memoryview


def _size(payload: Payload) -> int:
    return payload.nbytes if isinstance(payload, memoryview) else len(payload)


def parse_frame(payload: Payload, *, device: str) -> Frame:
    """Check the payload of terminal `device`'s ``frame`` topic and return it as a `Frame`.

    `device` is the one `parse_topic` read from the topic the frame arrived on.
    """
    size = _size(payload)
    if size > MAX_FRAME_BYTES:
        raise TerminalProfileError(ErrorReason.TOO_LARGE, f"{size} > {MAX_FRAME_BYTES} bytes")
    kind = sniff_frame_format(payload)
    if kind is None:
        raise TerminalProfileError(ErrorReason.BAD_FRAME, "neither a JPEG nor a PNG", field="data")
    return Frame(device, kind, bytes(payload))


# --- encoding -------------------------------------------------------------------------------------


def _document(message: Message) -> dict[str, object]:
    # Key order is part of the documented byte-exact form, so it is spelled out per message.
    match message:
        case KeypadEvent():
            return {
                "v": PROFILE_VERSION,
                "id": message.id,
                "op": message.op.value,
                "text": message.text,
            }
        case DepositEvent():
            return {
                "v": PROFILE_VERSION,
                "id": message.id,
                "op": message.op.value,
                "size": message.size.value,
                "unit": message.unit,
            }
        case DepositRetryEvent() | DepositCancelEvent() | CourierLogoutEvent():
            return {"v": PROFILE_VERSION, "id": message.id, "op": message.op.value}
        case ShowDisplay():
            document: dict[str, object] = {
                "v": PROFILE_VERSION,
                "op": message.op.value,
                "text": message.text,
                "tone": message.tone.value,
            }
            if message.ref is not None:
                document["ref"] = message.ref
            if message.compartment is not None:
                document["compartment"] = message.compartment
            return document
        case SessionDisplay():
            document = {"v": PROFILE_VERSION, "op": message.op.value, "courier": message.courier}
            if message.company is not None:
                document["company"] = message.company
            return document
        case TerminalState():
            return {"v": PROFILE_VERSION, "online": True, "fw": message.fw}
        case TerminalOffline():
            return {"v": PROFILE_VERSION, "online": False}
    raise TypeError(f"not a terminal-profile message: {message!r}")  # pragma: no cover


def encode(message: Message) -> bytes:
    """Serialize `message` as compact JSON bytes (ASCII, no spaces, fixed key order)."""
    return json.dumps(_document(message), separators=(",", ":")).encode("ascii")


# --- decoding -------------------------------------------------------------------------------------

_E = TypeVar("_E", bound=enum.StrEnum)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise TerminalProfileError(ErrorReason.DUPLICATE_KEY, "a key appears twice in one object")
    return document


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; Python's json module accepts them unless told otherwise.
    raise TerminalProfileError(ErrorReason.NOT_JSON, f"{name} is not JSON")


def _load(payload: Payload, limit: int) -> dict[str, Any]:
    size = _size(payload)
    if size > limit:
        raise TerminalProfileError(ErrorReason.TOO_LARGE, f"{size} > {limit} bytes")
    try:
        # Decoded explicitly: json.loads(bytes) would also guess UTF-16 and UTF-32.
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TerminalProfileError(ErrorReason.NOT_UTF8) from exc
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except TerminalProfileError:
        raise
    except (ValueError, RecursionError) as exc:
        # RecursionError: a few KiB of "[" nests deeper than the interpreter allows.
        raise TerminalProfileError(ErrorReason.NOT_JSON, str(exc)) from exc
    if not isinstance(document, dict):
        raise TerminalProfileError(ErrorReason.NOT_OBJECT, "expected a JSON object")
    if "v" not in document:
        _fail(ErrorReason.MISSING_FIELD, "v")
    version = document["v"]
    if type(version) is not int or version != PROFILE_VERSION:
        _fail(ErrorReason.BAD_VERSION, "v", f"expected {PROFILE_VERSION}")
    return document


def _field(document: dict[str, Any], name: str) -> Any:
    # The value stays untyped here on purpose: the dataclass constructor it is handed to checks it.
    try:
        return document[name]
    except KeyError:
        _fail(ErrorReason.MISSING_FIELD, name)


def _optional(document: dict[str, Any], name: str) -> Any:
    # An optional key is either absent or a real value: `null` is refused, never read as "absent".
    if name in document and document[name] is None:
        _fail(ErrorReason.BAD_TYPE, name, f"omit {name} rather than sending null")
    return document.get(name)


def _only(document: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(document.keys() - allowed)
    if extra:
        _fail(ErrorReason.UNKNOWN_FIELD, extra[0][:64], "this profile refuses unknown keys")


def _member(document: dict[str, Any], name: str, kind: type[_E], unknown: ErrorReason) -> _E:
    value = _check_str(_field(document, name), name)
    try:
        return kind(value)
    except ValueError:
        _fail(unknown, name, repr(value[:64]))


_BARE_KEYS: Final = frozenset({"v", "id", "op"})
_KEYPAD_KEYS: Final = _BARE_KEYS | {"text"}
_DEPOSIT_KEYS: Final = _BARE_KEYS | {"size", "unit"}
_SHOW_KEYS: Final = frozenset({"v", "op", "text", "tone", "ref", "compartment"})
_SESSION_KEYS: Final = frozenset({"v", "op", "courier", "company"})
_ONLINE_KEYS: Final = frozenset({"v", "online", "fw"})
_OFFLINE_KEYS: Final = frozenset({"v", "online"})


def parse_event(payload: Payload) -> Event:
    """Parse the payload of an ``event`` topic.

    When the event id is readable but the rest is not, the error's `message_id` carries it, so the
    gateway can still answer that event on the screen (a ``show`` with ``ref``).
    """
    document = _load(payload, MAX_EVENT_BYTES)
    event_id = _field(document, "id")
    _check_message_id(event_id, "id")
    try:
        op = _member(document, "op", EventOp, ErrorReason.UNKNOWN_OP)
        if op is EventOp.KEYPAD:
            _only(document, _KEYPAD_KEYS)
            return KeypadEvent(id=event_id, text=_field(document, "text"))
        if op is EventOp.DEPOSIT:
            _only(document, _DEPOSIT_KEYS)
            size = _member(document, "size", LockerSize, ErrorReason.UNKNOWN_VALUE)
            return DepositEvent(id=event_id, size=size, unit=_field(document, "unit"))
        _only(document, _BARE_KEYS)
        return _BARE_EVENTS[op](id=event_id)
    except TerminalProfileError as exc:
        exc.message_id = event_id
        raise


def parse_display(payload: Payload) -> Display:
    """Parse the payload of a ``display`` topic."""
    document = _load(payload, MAX_DISPLAY_BYTES)
    op = _member(document, "op", DisplayOp, ErrorReason.UNKNOWN_OP)
    if op is DisplayOp.SHOW:
        _only(document, _SHOW_KEYS)
        return ShowDisplay(
            text=_field(document, "text"),
            tone=_member(document, "tone", Tone, ErrorReason.UNKNOWN_VALUE),
            ref=_optional(document, "ref"),
            compartment=_optional(document, "compartment"),
        )
    _only(document, _SESSION_KEYS)
    return SessionDisplay(
        courier=_field(document, "courier"), company=_optional(document, "company")
    )


def parse_state(payload: Payload) -> TerminalState | TerminalOffline:
    """Parse the payload of a ``state`` topic: an online state or the offline last will."""
    document = _load(payload, MAX_STATE_BYTES)
    online = _field(document, "online")
    _check_bool(online, "online")
    if not online:
        _only(document, _OFFLINE_KEYS)
        return TerminalOffline()
    _only(document, _ONLINE_KEYS)
    return TerminalState(fw=_field(document, "fw"))
