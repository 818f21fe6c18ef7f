"""The door profile codec: byte-exact forms, round trips, each rejection, the fuzz invariant."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.door import (
    MAX_PAYLOAD_BYTES,
    MAX_SAFE_INT,
    AckError,
    CommandAck,
    DoorEvent,
    DoorOffline,
    DoorPosition,
    DoorProfileError,
    DoorState,
    ErrorReason,
    EventType,
    Message,
    PulseCommand,
    StatusCommand,
    StrikeState,
    encode,
    is_valid_id,
    parse_ack,
    parse_command,
    parse_event,
    parse_state,
)

Parser = Callable[[bytes], object]

# --- strategies -----------------------------------------------------------------------------------

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=64)
boots = st.text(alphabet="0123456789abcdef", min_size=8, max_size=8)
fws = st.text(alphabet=ID_ALPHABET + "+", min_size=1, max_size=64)

pulses = st.builds(PulseCommand, id=ids, relay=st.integers(1, 4), ms=st.integers(100, 30_000))
statuses = st.builds(StatusCommand, id=ids)
acks = st.one_of(
    st.builds(CommandAck.accepted, ids),
    st.builds(CommandAck.refused, ids, st.sampled_from(AckError)),
)
events = st.builds(
    DoorEvent,
    boot=boots,
    seq=st.integers(1, MAX_SAFE_INT),
    ts=st.integers(0, MAX_SAFE_INT),
    type=st.sampled_from(EventType),
    cmd=st.none() | ids,
)
states = st.builds(
    DoorState,
    boot=boots,
    seq=st.integers(0, MAX_SAFE_INT),
    door=st.sampled_from(DoorPosition),
    strike=st.sampled_from(StrikeState),
    fw=fws,
)

KNOWN_KEYS = [
    "v", "id", "op", "relay", "ms", "ok", "error", "boot", "seq",
    "ts", "type", "cmd", "online", "door", "strike", "fw",
]  # fmt: skip
INTERESTING = [
    0, 1, 2, 4, 5, 99, 100, 3000, 30_000, 30_001, -1, MAX_SAFE_INT, MAX_SAFE_INT + 1,
    True, False, None, 1.0, "", "pulse", "status", "gate-3", "0badc0de", "open", "closed",
    "locked", "released", "sim-1.0", *[m.value for m in EventType], *[m.value for m in AckError],
]  # fmt: skip
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
    | st.sampled_from(INTERESTING)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=16,
)
# Objects that look like profile messages, so the fuzz reaches the field checks and not only the
# "is this JSON" gate.
near_messages = st.dictionaries(
    st.sampled_from(KNOWN_KEYS), json_scalars | json_values, max_size=len(KNOWN_KEYS)
).map(lambda d: {"v": 1, **d})

PARSERS: list[Parser] = [parse_command, parse_ack, parse_event, parse_state]


def assert_parses_or_refuses(parser: Parser, payload: bytes) -> None:
    """The fuzz invariant: a valid typed message that re-encodes losslessly, or DoorProfileError."""
    try:
        message = parser(payload)
    except DoorProfileError as exc:
        reason: ErrorReason | None = exc.reason
    else:
        reason = None
    if reason is not None:
        assert isinstance(reason, ErrorReason)
        return
    assert isinstance(
        message, PulseCommand | StatusCommand | CommandAck | DoorEvent | DoorState | DoorOffline
    )
    assert parser(encode(message)) == message


def reason_of(parser: Parser, payload: bytes) -> DoorProfileError:
    with pytest.raises(DoorProfileError) as caught:
        parser(payload)
    return caught.value


# --- byte-exact forms (the same bytes appear in docs/door-profile.md) ---------------------------

BOOT = "5f3a9c01"
EXACT: list[tuple[Message, bytes]] = [
    (
        PulseCommand(id="c-7f2a", relay=1, ms=3000),
        b'{"v":1,"id":"c-7f2a","op":"pulse","relay":1,"ms":3000}',
    ),
    (StatusCommand(id="s-0001"), b'{"v":1,"id":"s-0001","op":"status"}'),
    (CommandAck.accepted("c-7f2a"), b'{"v":1,"id":"c-7f2a","ok":true}'),
    (
        CommandAck.refused("c-7f2a", AckError.STRIKE_FAULT),
        b'{"v":1,"id":"c-7f2a","ok":false,"error":"strike_fault"}',
    ),
    (
        DoorEvent(boot=BOOT, seq=1, ts=1764300000000, type=EventType.BOOT),
        b'{"v":1,"boot":"5f3a9c01","seq":1,"ts":1764300000000,"type":"boot"}',
    ),
    (
        DoorEvent(boot=BOOT, seq=2, ts=1764300012345, type=EventType.STRIKE_RELEASED, cmd="c-7f2a"),
        b'{"v":1,"boot":"5f3a9c01","seq":2,"ts":1764300012345,"type":"strike_released",'
        b'"cmd":"c-7f2a"}',
    ),
    (
        DoorState(
            boot=BOOT,
            seq=2,
            door=DoorPosition.CLOSED,
            strike=StrikeState.RELEASED,
            fw="sim-1.0",
        ),
        b'{"v":1,"online":true,"boot":"5f3a9c01","seq":2,"door":"closed","strike":"released",'
        b'"fw":"sim-1.0"}',
    ),
    (DoorOffline(), b'{"v":1,"online":false}'),
]

PARSER_FOR: dict[type, Parser] = {
    PulseCommand: parse_command,
    StatusCommand: parse_command,
    CommandAck: parse_ack,
    DoorEvent: parse_event,
    DoorState: parse_state,
    DoorOffline: parse_state,
}


@pytest.mark.parametrize(("message", "wire"), EXACT)
def test_encode_is_byte_exact_and_parses_back(message: Message, wire: bytes) -> None:
    assert encode(message) == wire
    assert PARSER_FOR[type(message)](wire) == message


def test_parsers_accept_bytearray_and_memoryview() -> None:
    wire = b'{"v":1,"id":"a","op":"status"}'
    assert parse_command(bytearray(wire)) == StatusCommand(id="a")
    assert parse_command(memoryview(wire)) == StatusCommand(id="a")


def test_unknown_extra_keys_are_ignored() -> None:
    wire = b'{"v":1,"id":"a","op":"pulse","relay":2,"ms":500,"why":"x","nested":{"k":[1]}}'
    assert parse_command(wire) == PulseCommand(id="a", relay=2, ms=500)
    assert parse_state(b'{"v":1,"online":false,"boot":"zz","since":3}') == DoorOffline()


def test_online_flags() -> None:
    assert DoorOffline().online is False
    state = DoorState(boot=BOOT, seq=0, door=DoorPosition.OPEN, strike=StrikeState.LOCKED, fw="x")
    assert state.online is True


# --- round trips ----------------------------------------------------------------------------------


@given(pulses | statuses)
def test_command_round_trip(message: PulseCommand | StatusCommand) -> None:
    assert parse_command(encode(message)) == message


@given(acks)
def test_ack_round_trip(message: CommandAck) -> None:
    assert parse_ack(encode(message)) == message


@given(events)
def test_event_round_trip(message: DoorEvent) -> None:
    assert parse_event(encode(message)) == message


@given(states | st.just(DoorOffline()))
def test_state_round_trip(message: DoorState | DoorOffline) -> None:
    assert parse_state(encode(message)) == message


@given(pulses | statuses | acks | events | states)
def test_encoding_is_compact_ascii_json_within_the_size_bound(message: Message) -> None:
    wire = encode(message)
    assert len(wire) <= MAX_PAYLOAD_BYTES
    assert b" " not in wire
    assert json.loads(wire)["v"] == 1


# --- rejections -----------------------------------------------------------------------------------

PULSE = {"v": 1, "id": "c1", "op": "pulse", "relay": 1, "ms": 3000}
ACK_OK = {"v": 1, "id": "c1", "ok": True}
ACK_FAIL = {"v": 1, "id": "c1", "ok": False, "error": "busy"}
EVENT = {"v": 1, "boot": BOOT, "seq": 3, "ts": 1764300000000, "type": "door_opened", "cmd": "c1"}
STATE = {
    "v": 1,
    "online": True,
    "boot": BOOT,
    "seq": 3,
    "door": "open",
    "strike": "released",
    "fw": "sim-1.0",
}
_MISSING = object()


def with_field(document: dict[str, Any], key: str, value: object) -> bytes:
    changed = dict(document)
    if value is _MISSING:
        del changed[key]
    else:
        changed[key] = value
    return json.dumps(changed).encode()


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", ErrorReason.NOT_JSON),
        (b"{", ErrorReason.NOT_JSON),
        (b"\xff\xfe{}", ErrorReason.NOT_UTF8),
        ('{"v":1}'.encode("utf-16"), ErrorReason.NOT_UTF8),
        (b'{"v":NaN}', ErrorReason.NOT_JSON),
        (b'{"v":1,"x":Infinity}', ErrorReason.NOT_JSON),
        (b'{"v":1,"v":1}', ErrorReason.DUPLICATE_KEY),
        (b'{"v":1,"o":{"a":1,"a":2}}', ErrorReason.DUPLICATE_KEY),
        (b"[" * 2000 + b"]" * 2000, ErrorReason.NOT_JSON),
        (b"[1]", ErrorReason.NOT_OBJECT),
        (b'"v"', ErrorReason.NOT_OBJECT),
        (b"null", ErrorReason.NOT_OBJECT),
        (b"{}", ErrorReason.MISSING_FIELD),
        (b'{"v":2}', ErrorReason.BAD_VERSION),
        (b'{"v":true}', ErrorReason.BAD_VERSION),
        (b'{"v":1.0}', ErrorReason.BAD_VERSION),
        (b'{"v":"1"}', ErrorReason.BAD_VERSION),
        (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", ErrorReason.TOO_LARGE),
    ],
)
def test_every_parser_refuses_bad_envelopes(
    parser: Parser, payload: bytes, reason: ErrorReason
) -> None:
    assert reason_of(parser, payload).reason is reason


def test_size_bound_is_inclusive() -> None:
    base = b'{"v":1,"id":"a","op":"status"}'
    padded = base[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(base)) + b"}"
    assert len(padded) == MAX_PAYLOAD_BYTES
    assert parse_command(padded) == StatusCommand(id="a")
    assert reason_of(parse_command, padded + b" ").reason is ErrorReason.TOO_LARGE


BAD_IDS = ["", "a" * 65, "a b", "a/b", "a+b", "#", "é", "a\n", "\u0663", 7, None, True, ["a"]]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    ("parser", "document", "key"),
    [
        (parse_command, PULSE, "id"),
        (parse_ack, ACK_OK, "id"),
        (parse_ack, ACK_FAIL, "id"),
        (parse_event, EVENT, "cmd"),
    ],
)
def test_ids_are_1_to_64_safe_characters(
    parser: Parser, document: dict[str, Any], key: str, bad: object
) -> None:
    error = reason_of(parser, with_field(document, key, bad))
    assert error.reason in {ErrorReason.BAD_TYPE, ErrorReason.BAD_FORMAT}
    assert error.field == key


def test_id_bounds_are_inclusive() -> None:
    assert is_valid_id("a")
    assert is_valid_id("A-z_0.9:" + "x" * 56)
    assert not is_valid_id("x" * 65)


@pytest.mark.parametrize(
    ("document", "key", "value", "reason"),
    [
        (PULSE, "id", _MISSING, ErrorReason.MISSING_FIELD),
        (PULSE, "op", _MISSING, ErrorReason.MISSING_FIELD),
        (PULSE, "op", "unlock", ErrorReason.UNKNOWN_OP),
        (PULSE, "op", "PULSE", ErrorReason.UNKNOWN_OP),
        (PULSE, "op", 1, ErrorReason.BAD_TYPE),
        (PULSE, "relay", _MISSING, ErrorReason.MISSING_FIELD),
        (PULSE, "relay", 0, ErrorReason.OUT_OF_RANGE),
        (PULSE, "relay", 5, ErrorReason.OUT_OF_RANGE),
        (PULSE, "relay", True, ErrorReason.BAD_TYPE),
        (PULSE, "relay", "1", ErrorReason.BAD_TYPE),
        (PULSE, "relay", 1.0, ErrorReason.BAD_TYPE),
        (PULSE, "ms", _MISSING, ErrorReason.MISSING_FIELD),
        (PULSE, "ms", 99, ErrorReason.OUT_OF_RANGE),
        (PULSE, "ms", 30_001, ErrorReason.OUT_OF_RANGE),
        (PULSE, "ms", -3000, ErrorReason.OUT_OF_RANGE),
        (PULSE, "ms", 10**400, ErrorReason.OUT_OF_RANGE),
        (PULSE, "ms", 3000.5, ErrorReason.BAD_TYPE),
        (PULSE, "ms", None, ErrorReason.BAD_TYPE),
    ],
)
def test_command_rejections(
    document: dict[str, Any], key: str, value: object, reason: ErrorReason
) -> None:
    error = reason_of(parse_command, with_field(document, key, value))
    assert error.reason is reason
    assert error.field == key


def test_refused_command_carries_its_id_when_readable() -> None:
    assert reason_of(parse_command, with_field(PULSE, "ms", 5)).message_id == "c1"
    assert reason_of(parse_command, with_field(PULSE, "op", "open")).message_id == "c1"
    assert reason_of(parse_command, with_field(PULSE, "id", "")).message_id is None
    assert reason_of(parse_command, b"{nope").message_id is None


@pytest.mark.parametrize(
    ("document", "key", "value", "reason"),
    [
        (ACK_OK, "ok", 1, ErrorReason.BAD_TYPE),
        (ACK_OK, "ok", 0, ErrorReason.BAD_TYPE),
        (ACK_OK, "ok", "true", ErrorReason.BAD_TYPE),
        (ACK_OK, "ok", None, ErrorReason.BAD_TYPE),
        (ACK_OK, "ok", _MISSING, ErrorReason.MISSING_FIELD),
        (ACK_OK, "id", _MISSING, ErrorReason.MISSING_FIELD),
        (ACK_OK, "error", "busy", ErrorReason.INCONSISTENT),
        (ACK_OK, "error", None, ErrorReason.INCONSISTENT),
        (ACK_FAIL, "error", _MISSING, ErrorReason.MISSING_FIELD),
        (ACK_FAIL, "error", "jammed", ErrorReason.UNKNOWN_VALUE),
        (ACK_FAIL, "error", None, ErrorReason.BAD_TYPE),
        (ACK_FAIL, "ok", 0, ErrorReason.BAD_TYPE),
    ],
)
def test_ack_rejections(
    document: dict[str, Any], key: str, value: object, reason: ErrorReason
) -> None:
    error = reason_of(parse_ack, with_field(document, key, value))
    assert error.reason is reason
    assert error.field == key


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("type", "door_ajar", ErrorReason.UNKNOWN_TYPE),
        ("type", "BOOT", ErrorReason.UNKNOWN_TYPE),
        ("type", None, ErrorReason.BAD_TYPE),
        ("type", _MISSING, ErrorReason.MISSING_FIELD),
        ("boot", "5F3A9C01", ErrorReason.BAD_FORMAT),
        ("boot", "5f3a9c0", ErrorReason.BAD_FORMAT),
        ("boot", "5f3a9c012", ErrorReason.BAD_FORMAT),
        ("boot", "5f3a9c0g", ErrorReason.BAD_FORMAT),
        ("boot", 12345678, ErrorReason.BAD_TYPE),
        ("boot", _MISSING, ErrorReason.MISSING_FIELD),
        ("seq", 0, ErrorReason.OUT_OF_RANGE),
        ("seq", MAX_SAFE_INT + 1, ErrorReason.OUT_OF_RANGE),
        ("seq", True, ErrorReason.BAD_TYPE),
        ("seq", "3", ErrorReason.BAD_TYPE),
        ("seq", _MISSING, ErrorReason.MISSING_FIELD),
        ("ts", -1, ErrorReason.OUT_OF_RANGE),
        ("ts", 1.5e12, ErrorReason.BAD_TYPE),
        ("ts", _MISSING, ErrorReason.MISSING_FIELD),
        ("cmd", None, ErrorReason.BAD_TYPE),
    ],
)
def test_event_rejections(key: str, value: object, reason: ErrorReason) -> None:
    error = reason_of(parse_event, with_field(EVENT, key, value))
    assert error.reason is reason
    assert error.field == key


def test_event_without_cmd_is_fine() -> None:
    event = parse_event(with_field(EVENT, "cmd", _MISSING))
    assert event.cmd is None
    assert event.type is EventType.DOOR_OPENED


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("online", _MISSING, ErrorReason.MISSING_FIELD),
        ("online", 1, ErrorReason.BAD_TYPE),
        ("online", "true", ErrorReason.BAD_TYPE),
        ("door", "ajar", ErrorReason.UNKNOWN_VALUE),
        ("door", _MISSING, ErrorReason.MISSING_FIELD),
        ("strike", "unlocked", ErrorReason.UNKNOWN_VALUE),
        ("strike", 0, ErrorReason.BAD_TYPE),
        ("seq", -1, ErrorReason.OUT_OF_RANGE),
        ("boot", "", ErrorReason.BAD_FORMAT),
        ("fw", "", ErrorReason.BAD_FORMAT),
        ("fw", "1.0 beta", ErrorReason.BAD_FORMAT),
        ("fw", 1.0, ErrorReason.BAD_TYPE),
        ("fw", _MISSING, ErrorReason.MISSING_FIELD),
    ],
)
def test_state_rejections(key: str, value: object, reason: ErrorReason) -> None:
    error = reason_of(parse_state, with_field(STATE, key, value))
    assert error.reason is reason
    assert error.field == key


def test_state_seq_may_be_zero_before_any_event() -> None:
    state = parse_state(with_field(STATE, "seq", 0))
    assert isinstance(state, DoorState)
    assert state.seq == 0


# --- invalid messages cannot be built -------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: PulseCommand(id="", ms=3000),
        lambda: PulseCommand(id="a", ms=99),
        lambda: PulseCommand(id="a", ms=3000, relay=5),
        lambda: PulseCommand(id="a", ms=True),
        lambda: StatusCommand(id="a b"),
        lambda: CommandAck(id="a", ok=1),  # type: ignore[arg-type]
        lambda: CommandAck(id="a", ok=True, error=AckError.BUSY),
        lambda: CommandAck(id="a", ok=False),
        lambda: CommandAck(id="a", ok=False, error="busy"),  # type: ignore[arg-type]
        lambda: DoorEvent(boot=BOOT, seq=0, ts=0, type=EventType.BOOT),
        lambda: DoorEvent(boot=BOOT, seq=1, ts=0, type="boot"),  # type: ignore[arg-type]
        lambda: DoorEvent(boot="XYZ", seq=1, ts=0, type=EventType.BOOT),
        lambda: DoorEvent(boot=BOOT, seq=1, ts=0, type=EventType.BOOT, cmd=""),
        lambda: DoorState(
            boot=BOOT,
            seq=0,
            door="open",  # type: ignore[arg-type]
            strike=StrikeState.LOCKED,
            fw="x",
        ),
        lambda: DoorState(
            boot=BOOT, seq=0, door=DoorPosition.OPEN, strike=StrikeState.LOCKED, fw=""
        ),
    ],
)
def test_invalid_messages_cannot_be_constructed(build: Callable[[], object]) -> None:
    with pytest.raises(DoorProfileError):
        build()


def test_messages_are_frozen_and_slotted() -> None:
    command = PulseCommand(id="a", ms=3000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.ms = 100  # type: ignore[misc]
    assert not hasattr(command, "__dict__")


def test_profile_error_is_a_value_error_with_data() -> None:
    error = reason_of(parse_ack, with_field(ACK_OK, "ok", 1))
    assert isinstance(error, ValueError)
    assert error.reason == "bad_type"
    assert error.field == "ok"
    assert "ok" in str(error)


# --- the fuzz invariant ---------------------------------------------------------------------------


@pytest.mark.parametrize("parser", PARSERS)
@given(payload=st.binary(max_size=MAX_PAYLOAD_BYTES + 16))
def test_fuzz_random_bytes(parser: Parser, payload: bytes) -> None:
    assert_parses_or_refuses(parser, payload)


@pytest.mark.parametrize("parser", PARSERS)
@given(value=json_values)
def test_fuzz_random_json(parser: Parser, value: object) -> None:
    assert_parses_or_refuses(parser, json.dumps(value).encode())


@pytest.mark.parametrize("parser", PARSERS)
@given(value=near_messages)
def test_fuzz_near_messages(parser: Parser, value: dict[str, object]) -> None:
    assert_parses_or_refuses(parser, json.dumps(value).encode())


@given(
    message=pulses | statuses | acks | events | states,
    data=st.data(),
)
def test_fuzz_one_field_of_a_valid_message_replaced(message: Message, data: st.DataObject) -> None:
    document = json.loads(encode(message))
    key = data.draw(st.sampled_from(sorted(document)))
    document[key] = data.draw(json_values)
    payload = json.dumps(document).encode()
    assert_parses_or_refuses(PARSER_FOR[type(message)], payload)


@pytest.mark.parametrize("parser", PARSERS)
@given(message=pulses | statuses | acks | events | states, cut=st.integers(0, 400))
def test_fuzz_truncated_messages(parser: Parser, message: Message, cut: int) -> None:
    wire = encode(message)
    assert_parses_or_refuses(parser, wire[: min(cut, len(wire))])
