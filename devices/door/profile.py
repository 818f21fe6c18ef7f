"""The IP door controller profile, version 1: typed messages and their JSON codec (sans-I/O).

A door controller and the gateway talk JSON over MQTT (topics live in `devices.door.topics`).
This module only turns messages into bytes and bytes into messages; it never touches a socket.

* `encode(message)` gives compact JSON bytes (no spaces, fixed key order).
* `parse_command`, `parse_ack`, `parse_event` and `parse_state` take the payload of one topic each
  and return a frozen, slotted dataclass, or raise `DoorProfileError` — nothing else, whatever
  the bytes. Every dataclass validates itself in ``__post_init__``, so an invalid message cannot be
  built on either side of the wire.

Payloads are hostile until parsed: they are size-bounded before any decoding, must be UTF-8 JSON
objects with ``"v": 1``, may not repeat a key (two parsers could pick different values), and every
field is type- and range-checked. Unknown extra keys are ignored so that later profile revisions can
add fields without breaking older gateways.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn, TypeAlias, TypeVar

from devices.door.errors import DoorProfileError, ErrorReason

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_PULSE_MS",
    "MAX_RELAY",
    "MAX_SAFE_INT",
    "MIN_PULSE_MS",
    "MIN_RELAY",
    "PROFILE_VERSION",
    "AckError",
    "Command",
    "CommandAck",
    "DoorEvent",
    "DoorOffline",
    "DoorPosition",
    "DoorState",
    "EventType",
    "Message",
    "PulseCommand",
    "StatusCommand",
    "StrikeState",
    "encode",
    "is_valid_id",
    "parse_ack",
    "parse_command",
    "parse_event",
    "parse_state",
]

PROFILE_VERSION: Final = 1
"""The value of ``"v"`` in every message of this profile."""

MAX_PAYLOAD_BYTES: Final = 4096
"""Payloads longer than this are refused before they are decoded."""

MIN_PULSE_MS: Final = 100
MAX_PULSE_MS: Final = 30_000
MIN_RELAY: Final = 1
MAX_RELAY: Final = 4

MAX_SAFE_INT: Final = 2**53 - 1
"""Upper bound of ``seq`` and ``ts``: the largest integer every JSON implementation keeps exact."""

# fullmatch() is used with these, so a trailing newline cannot slip through as it would with `$`.
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_BOOT_PATTERN: Final = re.compile(r"[0-9a-f]{8}")
_FW_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")


class EventType(enum.StrEnum):
    """What a controller reports on its ``event`` topic."""

    STRIKE_RELEASED = "strike_released"
    STRIKE_RELOCKED = "strike_relocked"
    DOOR_OPENED = "door_opened"
    DOOR_CLOSED = "door_closed"
    FORCED_OPEN = "forced_open"
    HELD_OPEN = "held_open"
    STRIKE_FAULT = "strike_fault"
    BOOT = "boot"


class AckError(enum.StrEnum):
    """Why a controller refused a command."""

    STRIKE_FAULT = "strike_fault"
    BUSY = "busy"
    BAD_COMMAND = "bad_command"


class DoorPosition(enum.StrEnum):
    """What the door-position sensor reads."""

    OPEN = "open"
    CLOSED = "closed"


class StrikeState(enum.StrEnum):
    """Where the electric strike is."""

    LOCKED = "locked"
    RELEASED = "released"


def is_valid_id(value: object) -> bool:
    """Tell whether `value` is a valid command id or device name: 1..64 of ``[A-Za-z0-9_.:-]``."""
    return type(value) is str and _ID_PATTERN.fullmatch(value) is not None


def _fail(reason: ErrorReason, field: str, detail: str = "") -> NoReturn:
    raise DoorProfileError(reason, detail, field=field)


def _check_id(value: object, field: str) -> None:
    if type(value) is not str:
        _fail(ErrorReason.BAD_TYPE, field, "expected a string")
    if _ID_PATTERN.fullmatch(value) is None:
        _fail(ErrorReason.BAD_FORMAT, field, "expected 1..64 characters of [A-Za-z0-9_.:-]")


def _check_boot(value: object) -> None:
    if type(value) is not str:
        _fail(ErrorReason.BAD_TYPE, "boot", "expected a string")
    if _BOOT_PATTERN.fullmatch(value) is None:
        _fail(ErrorReason.BAD_FORMAT, "boot", "expected 8 lowercase hex digits")


def _check_int(value: object, field: str, low: int, high: int) -> None:
    # `type(...) is int` rather than isinstance: True and False are ints to Python, not to us.
    if type(value) is not int:
        _fail(ErrorReason.BAD_TYPE, field, "expected an integer")
    if not low <= value <= high:
        _fail(ErrorReason.OUT_OF_RANGE, field, f"expected {low}..{high}")


def _check_bool(value: object, field: str) -> None:
    if type(value) is not bool:
        _fail(ErrorReason.BAD_TYPE, field, "expected true or false")


_E = TypeVar("_E", bound=enum.StrEnum)


def _check_member(value: object, kind: type[enum.StrEnum], field: str) -> None:
    if not isinstance(value, kind):
        _fail(ErrorReason.BAD_TYPE, field, f"expected a {kind.__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PulseCommand:
    """Release the strike on `relay` for `ms` milliseconds (op ``pulse``)."""

    id: str
    ms: int
    relay: int = 1

    def __post_init__(self) -> None:
        _check_id(self.id, "id")
        _check_int(self.relay, "relay", MIN_RELAY, MAX_RELAY)
        _check_int(self.ms, "ms", MIN_PULSE_MS, MAX_PULSE_MS)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusCommand:
    """Ask the controller to publish its retained state again (op ``status``)."""

    id: str

    def __post_init__(self) -> None:
        _check_id(self.id, "id")


Command: TypeAlias = PulseCommand | StatusCommand
"""Anything the gateway may send on a ``cmd`` topic."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAck:
    """The controller's answer to one command: accepted, or refused with an `AckError`."""

    id: str
    ok: bool
    error: AckError | None = None

    def __post_init__(self) -> None:
        _check_id(self.id, "id")
        _check_bool(self.ok, "ok")
        if self.ok:
            if self.error is not None:
                _fail(ErrorReason.INCONSISTENT, "error", "an accepted command carries no error")
        else:
            if self.error is None:
                _fail(ErrorReason.MISSING_FIELD, "error", "a refused command needs an error")
            _check_member(self.error, AckError, "error")

    @classmethod
    def accepted(cls, command_id: str) -> CommandAck:
        """Build the ``ok: true`` answer to `command_id`."""
        return cls(id=command_id, ok=True)

    @classmethod
    def refused(cls, command_id: str, error: AckError) -> CommandAck:
        """Build the ``ok: false`` answer to `command_id`."""
        return cls(id=command_id, ok=False, error=error)


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorEvent:
    """Something that happened at the door.

    `boot` identifies the controller's current power-on, `seq` counts its events from 1 within that
    boot, `ts` is the controller's wall clock in Unix milliseconds, and `cmd` names the command
    that caused the event, if one did.
    """

    boot: str
    seq: int
    ts: int
    type: EventType
    cmd: str | None = None

    def __post_init__(self) -> None:
        _check_boot(self.boot)
        _check_int(self.seq, "seq", 1, MAX_SAFE_INT)
        _check_int(self.ts, "ts", 0, MAX_SAFE_INT)
        _check_member(self.type, EventType, "type")
        if self.cmd is not None:
            _check_id(self.cmd, "cmd")


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorState:
    """The retained snapshot of an online controller.

    `seq` is the sequence number of the last event published in this boot (0 before the first), so
    a subscriber that joins late can tell which events it has missed.
    """

    boot: str
    seq: int
    door: DoorPosition
    strike: StrikeState
    fw: str

    def __post_init__(self) -> None:
        _check_boot(self.boot)
        _check_int(self.seq, "seq", 0, MAX_SAFE_INT)
        _check_member(self.door, DoorPosition, "door")
        _check_member(self.strike, StrikeState, "strike")
        if type(self.fw) is not str:
            _fail(ErrorReason.BAD_TYPE, "fw", "expected a string")
        if _FW_PATTERN.fullmatch(self.fw) is None:
            _fail(ErrorReason.BAD_FORMAT, "fw", "expected 1..64 characters of [A-Za-z0-9_.:+-]")

    @property
    def online(self) -> Literal[True]:
        """Always true: a controller that publishes its state is online."""
        return True


@dataclass(frozen=True, slots=True)
class DoorOffline:
    """The controller's last will, retained on its ``state`` topic while it is unreachable."""

    @property
    def online(self) -> Literal[False]:
        """Always false."""
        return False


Message: TypeAlias = PulseCommand | StatusCommand | CommandAck | DoorEvent | DoorState | DoorOffline
"""Every message of the profile."""


# --- encoding -------------------------------------------------------------------------------------


def _document(message: Message) -> dict[str, object]:
    # Key order is part of the documented byte-exact form, so it is spelled out per message.
    match message:
        case PulseCommand():
            return {
                "v": PROFILE_VERSION,
                "id": message.id,
                "op": "pulse",
                "relay": message.relay,
                "ms": message.ms,
            }
        case StatusCommand():
            return {"v": PROFILE_VERSION, "id": message.id, "op": "status"}
        case CommandAck():
            document: dict[str, object] = {"v": PROFILE_VERSION, "id": message.id, "ok": message.ok}
            if message.error is not None:
                document["error"] = message.error.value
            return document
        case DoorEvent():
            document = {
                "v": PROFILE_VERSION,
                "boot": message.boot,
                "seq": message.seq,
                "ts": message.ts,
                "type": message.type.value,
            }
            if message.cmd is not None:
                document["cmd"] = message.cmd
            return document
        case DoorState():
            return {
                "v": PROFILE_VERSION,
                "online": True,
                "boot": message.boot,
                "seq": message.seq,
                "door": message.door.value,
                "strike": message.strike.value,
                "fw": message.fw,
            }
        case DoorOffline():
            return {"v": PROFILE_VERSION, "online": False}
    raise TypeError(f"not a door-profile message: {message!r}")  # pragma: no cover


def encode(message: Message) -> bytes:
    """Serialize `message` as compact JSON bytes (ASCII, no spaces, fixed key order)."""
    return json.dumps(_document(message), separators=(",", ":")).encode("ascii")


# --- decoding -------------------------------------------------------------------------------------

Payload: TypeAlias = bytes | bytearray | memoryview


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise DoorProfileError(ErrorReason.DUPLICATE_KEY, "a key appears twice in one object")
    return document


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; Python's json module accepts them unless told otherwise.
    raise DoorProfileError(ErrorReason.NOT_JSON, f"{name} is not JSON")


def _load(payload: Payload) -> dict[str, Any]:
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise DoorProfileError(ErrorReason.TOO_LARGE, f"{size} > {MAX_PAYLOAD_BYTES} bytes")
    try:
        # Decoded explicitly: json.loads(bytes) would also guess UTF-16 and UTF-32.
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DoorProfileError(ErrorReason.NOT_UTF8) from exc
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except DoorProfileError:
        raise
    except (ValueError, RecursionError) as exc:
        # RecursionError: 4 KiB of "[" nests deeper than the interpreter allows.
        raise DoorProfileError(ErrorReason.NOT_JSON, str(exc)) from exc
    if not isinstance(document, dict):
        raise DoorProfileError(ErrorReason.NOT_OBJECT, "expected a JSON object")
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


def _member(document: dict[str, Any], name: str, kind: type[_E], unknown: ErrorReason) -> _E:
    value = _field(document, name)
    if type(value) is not str:
        _fail(ErrorReason.BAD_TYPE, name, "expected a string")
    try:
        return kind(value)
    except ValueError:
        _fail(unknown, name, repr(value[:64]))


def parse_command(payload: Payload) -> Command:
    """Parse the payload of a ``cmd`` topic.

    When the command id is readable but the rest is not, the error's `message_id` carries it, so
    the controller can still refuse that command by id with ``bad_command``.
    """
    document = _load(payload)
    command_id = _field(document, "id")
    _check_id(command_id, "id")
    try:
        op = _field(document, "op")
        if type(op) is not str:
            _fail(ErrorReason.BAD_TYPE, "op", "expected a string")
        if op == "pulse":
            return PulseCommand(
                id=command_id, relay=_field(document, "relay"), ms=_field(document, "ms")
            )
        if op == "status":
            return StatusCommand(id=command_id)
        _fail(ErrorReason.UNKNOWN_OP, "op", repr(op[:64]))
    except DoorProfileError as exc:
        exc.message_id = command_id
        raise


def parse_ack(payload: Payload) -> CommandAck:
    """Parse the payload of an ``ack`` topic."""
    document = _load(payload)
    ok = _field(document, "ok")
    _check_bool(ok, "ok")
    if ok:
        if "error" in document:
            _fail(ErrorReason.INCONSISTENT, "error", "an accepted command carries no error")
        return CommandAck(id=_field(document, "id"), ok=True)
    error = _member(document, "error", AckError, ErrorReason.UNKNOWN_VALUE)
    return CommandAck(id=_field(document, "id"), ok=False, error=error)


def parse_event(payload: Payload) -> DoorEvent:
    """Parse the payload of an ``event`` topic."""
    document = _load(payload)
    event_type = _member(document, "type", EventType, ErrorReason.UNKNOWN_TYPE)
    cmd = document.get("cmd")
    if cmd is None and "cmd" in document:
        _fail(ErrorReason.BAD_TYPE, "cmd", "omit cmd rather than sending null")
    return DoorEvent(
        boot=_field(document, "boot"),
        seq=_field(document, "seq"),
        ts=_field(document, "ts"),
        type=event_type,
        cmd=cmd,
    )


def parse_state(payload: Payload) -> DoorState | DoorOffline:
    """Parse the payload of a ``state`` topic: an online snapshot or the offline last will."""
    document = _load(payload)
    online = _field(document, "online")
    _check_bool(online, "online")
    if not online:
        return DoorOffline()
    return DoorState(
        boot=_field(document, "boot"),
        seq=_field(document, "seq"),
        door=_member(document, "door", DoorPosition, ErrorReason.UNKNOWN_VALUE),
        strike=_member(document, "strike", StrikeState, ErrorReason.UNKNOWN_VALUE),
        fw=_field(document, "fw"),
    )
