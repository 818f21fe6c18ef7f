"""The terminal profile codec: byte-exact forms, round trips, each rejection, the fuzz invariant."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.terminal import (
    JPEG_MAGIC,
    MAX_COMPANY_CHARS,
    MAX_DISPLAY_BYTES,
    MAX_EVENT_BYTES,
    MAX_FRAME_BYTES,
    MAX_STATE_BYTES,
    MAX_TEXT_CHARS,
    PNG_MAGIC,
    CourierLogoutEvent,
    DepositCancelEvent,
    DepositEvent,
    DepositRetryEvent,
    ErrorReason,
    EventOp,
    Frame,
    FrameFormat,
    KeypadEvent,
    LockerSize,
    Message,
    SessionDisplay,
    ShowDisplay,
    TerminalOffline,
    TerminalProfileError,
    TerminalState,
    Tone,
    encode,
    is_valid_device,
    is_valid_message_id,
    parse_display,
    parse_event,
    parse_frame,
    parse_state,
    sniff_frame_format,
)

Parser = Callable[[bytes], object]

# --- strategies -----------------------------------------------------------------------------------

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=32)
codes = st.text(alphabet="0123456789", min_size=6, max_size=8)
units = st.text(alphabet=ID_ALPHABET.replace("_", ""), min_size=1, max_size=40)
# What str.isprintable() allows: no control, format, surrogate, private-use, unassigned or
# separator characters, except the ASCII space.
printable = st.characters(exclude_categories=("C", "Z")).filter(str.isprintable) | st.just(" ")
texts = st.text(printable, min_size=1, max_size=MAX_TEXT_CHARS)
companies = st.text(printable, min_size=1, max_size=MAX_COMPANY_CHARS)
fws = st.text(alphabet=ID_ALPHABET + ".:+", min_size=1, max_size=64)

events = st.one_of(
    st.builds(KeypadEvent, id=ids, text=codes),
    st.builds(DepositEvent, id=ids, size=st.sampled_from(LockerSize), unit=units),
    st.builds(DepositRetryEvent, id=ids),
    st.builds(DepositCancelEvent, id=ids),
    st.builds(CourierLogoutEvent, id=ids),
)
displays = st.one_of(
    st.builds(
        ShowDisplay,
        text=texts,
        tone=st.sampled_from(Tone),
        ref=st.none() | ids,
        compartment=st.none() | st.integers(1, 255),
    ),
    st.builds(SessionDisplay.opened, st.none() | companies),
    st.just(SessionDisplay.closed()),
)
states = st.builds(TerminalState, fw=fws) | st.just(TerminalOffline())
frames = st.builds(
    lambda kind, tail: Frame("term-a", kind, (JPEG_MAGIC if kind == "jpeg" else PNG_MAGIC) + tail),
    st.sampled_from(FrameFormat),
    st.binary(max_size=256),
)

KNOWN_KEYS = [
    "v", "id", "op", "text", "size", "unit", "tone", "ref", "compartment", "courier", "company",
    "online", "fw",
]  # fmt: skip
INTERESTING = [
    0, 1, 2, 255, 256, -1, True, False, None, 1.0, "", " ", "123456", "12345678", "123456789",
    "1-201", "mini", "S", "M", "L", "XL", "ok", "error", "info", "show", "session", "sim-1.0",
    "\u0007", "\u202e", "\ud800", *[m.value for m in EventOp],
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

PARSERS: list[Parser] = [parse_event, parse_display, parse_state]
MESSAGE_TYPES = (
    KeypadEvent,
    DepositEvent,
    DepositRetryEvent,
    DepositCancelEvent,
    CourierLogoutEvent,
    ShowDisplay,
    SessionDisplay,
    TerminalState,
    TerminalOffline,
)
PARSER_FOR: dict[type, Parser] = {
    KeypadEvent: parse_event,
    DepositEvent: parse_event,
    DepositRetryEvent: parse_event,
    DepositCancelEvent: parse_event,
    CourierLogoutEvent: parse_event,
    ShowDisplay: parse_display,
    SessionDisplay: parse_display,
    TerminalState: parse_state,
    TerminalOffline: parse_state,
}


def assert_parses_or_refuses(parser: Parser, payload: bytes) -> None:
    """The fuzz invariant: a valid typed message that re-encodes losslessly, or the one error."""
    try:
        message = parser(payload)
    except TerminalProfileError as exc:
        reason: ErrorReason | None = exc.reason
    else:
        reason = None
    if reason is not None:
        assert isinstance(reason, ErrorReason)
        return
    assert isinstance(message, MESSAGE_TYPES)
    assert parser(encode(message)) == message
    # Strict: a message that parsed has no key its encoding lacks, so it re-encodes to the same
    # JSON value (only spacing and key order may differ).
    assert json.loads(encode(message)) == json.loads(payload)


def error_of(parser: Parser, payload: bytes) -> TerminalProfileError:
    with pytest.raises(TerminalProfileError) as caught:
        parser(payload)
    return caught.value


# --- byte-exact forms (the same bytes appear in docs/terminal-profile.md) ------------------------

EXACT: list[tuple[Message, bytes]] = [
    (
        KeypadEvent(id="5f3a9c01-1", text="04711235"),
        b'{"v":1,"id":"5f3a9c01-1","op":"keypad","text":"04711235"}',
    ),
    (
        DepositEvent(id="5f3a9c01-2", size=LockerSize.M, unit="1-201"),
        b'{"v":1,"id":"5f3a9c01-2","op":"deposit","size":"M","unit":"1-201"}',
    ),
    (DepositRetryEvent(id="5f3a9c01-3"), b'{"v":1,"id":"5f3a9c01-3","op":"deposit_retry"}'),
    (DepositCancelEvent(id="5f3a9c01-4"), b'{"v":1,"id":"5f3a9c01-4","op":"deposit_cancel"}'),
    (CourierLogoutEvent(id="5f3a9c01-5"), b'{"v":1,"id":"5f3a9c01-5","op":"courier_logout"}'),
    (
        ShowDisplay(text="Compartment 7 is open", tone=Tone.OK, ref="5f3a9c01-1", compartment=7),
        b'{"v":1,"op":"show","text":"Compartment 7 is open","tone":"ok","ref":"5f3a9c01-1",'
        b'"compartment":7}',
    ),
    (
        ShowDisplay(text="Show your code to the camera", tone=Tone.INFO),
        b'{"v":1,"op":"show","text":"Show your code to the camera","tone":"info"}',
    ),
    (
        SessionDisplay.opened("顺丰速运"),
        b'{"v":1,"op":"session","courier":true,"company":"\\u987a\\u4e30\\u901f\\u8fd0"}',
    ),
    (SessionDisplay.closed(), b'{"v":1,"op":"session","courier":false}'),
    (TerminalState(fw="sim-1.0"), b'{"v":1,"online":true,"fw":"sim-1.0"}'),
    (TerminalOffline(), b'{"v":1,"online":false}'),
]


@pytest.mark.parametrize(("message", "wire"), EXACT)
def test_encode_is_byte_exact_and_parses_back(message: Message, wire: bytes) -> None:
    assert encode(message) == wire
    assert PARSER_FOR[type(message)](wire) == message


def test_parsers_accept_bytearray_and_memoryview_and_any_spacing() -> None:
    wire = b'{"v":1,"id":"a","op":"deposit_retry"}'
    assert parse_event(bytearray(wire)) == DepositRetryEvent(id="a")
    assert parse_event(memoryview(wire)) == DepositRetryEvent(id="a")
    spaced = b'{ "op" : "keypad",\n "text": "123456", "id": "k", "v": 1 }'
    assert parse_event(spaced) == KeypadEvent(id="k", text="123456")
    assert parse_display('{"v":1,"op":"show","text":"取件成功","tone":"ok"}'.encode()) == (
        ShowDisplay(text="取件成功", tone=Tone.OK)
    )


def test_ops_and_online_flags() -> None:
    assert KeypadEvent(id="a", text="123456").op is EventOp.KEYPAD
    assert DepositCancelEvent(id="a").op is EventOp.DEPOSIT_CANCEL
    assert ShowDisplay(text="x", tone=Tone.INFO).op == "show"
    assert SessionDisplay.closed().op == "session"
    assert TerminalState(fw="x").online is True
    assert TerminalOffline().online is False


# --- round trips ----------------------------------------------------------------------------------


@given(events)
def test_event_round_trip(message: Message) -> None:
    wire = encode(message)
    assert parse_event(wire) == message
    assert len(wire) <= MAX_EVENT_BYTES


@given(displays)
def test_display_round_trip(message: Message) -> None:
    wire = encode(message)
    assert parse_display(wire) == message
    assert len(wire) <= MAX_DISPLAY_BYTES


@given(states)
def test_state_round_trip(message: Message) -> None:
    wire = encode(message)
    assert parse_state(wire) == message
    assert len(wire) <= MAX_STATE_BYTES


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    assert parse_frame(frame.data, device=frame.device) == frame
    assert sniff_frame_format(frame.data) is frame.format


@given(events | displays | states)
def test_encoding_is_compact_ascii_json(message: Message) -> None:
    wire = encode(message)
    assert wire.isascii()
    assert b'": ' not in wire
    assert b'", "' not in wire
    assert json.loads(wire)["v"] == 1


# --- envelope rejections --------------------------------------------------------------------------


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", ErrorReason.NOT_JSON),
        (b"{", ErrorReason.NOT_JSON),
        (b"\xff\xfe{}", ErrorReason.NOT_UTF8),
        ('{"v":1}'.encode("utf-16"), ErrorReason.NOT_UTF8),
        (b'{"v":NaN}', ErrorReason.NOT_JSON),
        (b'{"v":1,"x":-Infinity}', ErrorReason.NOT_JSON),
        (b'{"v":1,"v":1}', ErrorReason.DUPLICATE_KEY),
        (b'{"v":1,"o":{"a":1,"a":2}}', ErrorReason.DUPLICATE_KEY),
        (b"[1]", ErrorReason.NOT_OBJECT),
        (b'"v"', ErrorReason.NOT_OBJECT),
        (b"null", ErrorReason.NOT_OBJECT),
        (b"{}", ErrorReason.MISSING_FIELD),
        (b'{"v":2}', ErrorReason.BAD_VERSION),
        (b'{"v":true}', ErrorReason.BAD_VERSION),
        (b'{"v":1.0}', ErrorReason.BAD_VERSION),
        (b'{"v":"1"}', ErrorReason.BAD_VERSION),
        (b"{" + b" " * MAX_DISPLAY_BYTES + b"}", ErrorReason.TOO_LARGE),
    ],
)
def test_every_parser_refuses_bad_envelopes(
    parser: Parser, payload: bytes, reason: ErrorReason
) -> None:
    assert error_of(parser, payload).reason is reason


def test_nesting_too_deep_is_not_json() -> None:
    deep = b"[" * 2000 + b"]" * 2000
    assert error_of(parse_display, deep).reason is ErrorReason.NOT_JSON
    assert error_of(parse_event, deep).reason is ErrorReason.TOO_LARGE
    assert error_of(parse_state, deep).reason is ErrorReason.TOO_LARGE


@pytest.mark.parametrize(
    ("parser", "base", "limit", "expected"),
    [
        (
            parse_event,
            b'{"v":1,"id":"a","op":"courier_logout"}',
            MAX_EVENT_BYTES,
            CourierLogoutEvent(id="a"),
        ),
        (
            parse_display,
            b'{"v":1,"op":"session","courier":false}',
            MAX_DISPLAY_BYTES,
            SessionDisplay.closed(),
        ),
        (parse_state, b'{"v":1,"online":false}', MAX_STATE_BYTES, TerminalOffline()),
    ],
)
def test_size_bounds_are_inclusive(parser: Parser, base: bytes, limit: int, expected: Any) -> None:
    padded = base[:-1] + b" " * (limit - len(base)) + b"}"
    assert len(padded) == limit
    assert parser(padded) == expected
    assert error_of(parser, padded + b" ").reason is ErrorReason.TOO_LARGE


# --- events ---------------------------------------------------------------------------------------

KEYPAD = {"v": 1, "id": "k-1", "op": "keypad", "text": "12345678"}
DEPOSIT = {"v": 1, "id": "d-1", "op": "deposit", "size": "S", "unit": "1-201"}
RETRY = {"v": 1, "id": "r-1", "op": "deposit_retry"}
SHOW = {"v": 1, "op": "show", "text": "Hello", "tone": "info", "ref": "k-1", "compartment": 3}
SESSION = {"v": 1, "op": "session", "courier": True, "company": "SF Express"}
ONLINE = {"v": 1, "online": True, "fw": "sim-1.0"}
OFFLINE = {"v": 1, "online": False}
_MISSING = object()


def with_field(document: dict[str, Any], key: str, value: object) -> bytes:
    changed = dict(document)
    if value is _MISSING:
        del changed[key]
    else:
        changed[key] = value
    return json.dumps(changed).encode()


BAD_IDS = ["", "a" * 33, "a b", "a.b", "a:b", "a/b", "#", "é", "a\n", "\u0663", 7, None, True]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    ("parser", "document", "key"),
    [(parse_event, KEYPAD, "id"), (parse_event, RETRY, "id"), (parse_display, SHOW, "ref")],
)
def test_ids_are_1_to_32_safe_characters(
    parser: Parser, document: dict[str, Any], key: str, bad: object
) -> None:
    error = error_of(parser, with_field(document, key, bad))
    assert error.reason in {ErrorReason.BAD_TYPE, ErrorReason.BAD_FORMAT}
    assert error.field == key


def test_id_helpers() -> None:
    assert is_valid_message_id("a")
    assert is_valid_message_id("A-z_09" + "x" * 26)
    assert not is_valid_message_id("x" * 33)
    assert not is_valid_message_id("a.b")
    assert is_valid_device("term-a.1:x_" + "y" * 53)
    assert not is_valid_device("y" * 65)
    assert not is_valid_device(None)


@pytest.mark.parametrize(
    ("document", "key", "value", "reason"),
    [
        (KEYPAD, "id", _MISSING, ErrorReason.MISSING_FIELD),
        (KEYPAD, "op", _MISSING, ErrorReason.MISSING_FIELD),
        (KEYPAD, "op", "pickup", ErrorReason.UNKNOWN_OP),
        (KEYPAD, "op", "KEYPAD", ErrorReason.UNKNOWN_OP),
        (KEYPAD, "op", "show", ErrorReason.UNKNOWN_OP),
        (KEYPAD, "op", 1, ErrorReason.BAD_TYPE),
        (KEYPAD, "op", None, ErrorReason.BAD_TYPE),
        (KEYPAD, "text", _MISSING, ErrorReason.MISSING_FIELD),
        (KEYPAD, "text", "12345", ErrorReason.BAD_FORMAT),
        (KEYPAD, "text", "123456789", ErrorReason.BAD_FORMAT),
        (KEYPAD, "text", "1234567a", ErrorReason.BAD_FORMAT),
        (KEYPAD, "text", "123456\n", ErrorReason.BAD_FORMAT),
        (KEYPAD, "text", " 123456", ErrorReason.BAD_FORMAT),
        (KEYPAD, "text", "١٢٣٤٥٦", ErrorReason.BAD_FORMAT),
        (KEYPAD, "text", 12345678, ErrorReason.BAD_TYPE),
        (KEYPAD, "text", None, ErrorReason.BAD_TYPE),
        (KEYPAD, "size", "S", ErrorReason.UNKNOWN_FIELD),
        (KEYPAD, "ts", 1, ErrorReason.UNKNOWN_FIELD),
        (DEPOSIT, "size", _MISSING, ErrorReason.MISSING_FIELD),
        (DEPOSIT, "size", "XL", ErrorReason.UNKNOWN_VALUE),
        (DEPOSIT, "size", "s", ErrorReason.UNKNOWN_VALUE),
        (DEPOSIT, "size", "MINI", ErrorReason.UNKNOWN_VALUE),
        (DEPOSIT, "size", 1, ErrorReason.BAD_TYPE),
        (DEPOSIT, "unit", _MISSING, ErrorReason.MISSING_FIELD),
        (DEPOSIT, "unit", "", ErrorReason.BAD_FORMAT),
        (DEPOSIT, "unit", "u" * 41, ErrorReason.BAD_FORMAT),
        (DEPOSIT, "unit", "1/201", ErrorReason.BAD_FORMAT),
        (DEPOSIT, "unit", "1_201", ErrorReason.BAD_FORMAT),
        (DEPOSIT, "unit", "1 201", ErrorReason.BAD_FORMAT),
        (DEPOSIT, "unit", 1201, ErrorReason.BAD_TYPE),
        (DEPOSIT, "text", "123456", ErrorReason.UNKNOWN_FIELD),
        (DEPOSIT, "phone", "13800138000", ErrorReason.UNKNOWN_FIELD),
        (RETRY, "parcel", "abc", ErrorReason.UNKNOWN_FIELD),
        (RETRY, "op", "deposit_retry ", ErrorReason.UNKNOWN_OP),
    ],
)
def test_event_rejections(
    document: dict[str, Any], key: str, value: object, reason: ErrorReason
) -> None:
    error = error_of(parse_event, with_field(document, key, value))
    assert (error.reason, error.field) == (reason, key)


def test_refused_event_carries_its_id_when_readable() -> None:
    assert error_of(parse_event, with_field(KEYPAD, "text", "1")).message_id == "k-1"
    assert error_of(parse_event, with_field(KEYPAD, "op", "x")).message_id == "k-1"
    assert error_of(parse_event, with_field(DEPOSIT, "extra", 1)).message_id == "d-1"
    assert error_of(parse_event, with_field(KEYPAD, "id", "a b")).message_id is None
    assert error_of(parse_event, b"{nope").message_id is None


def test_unknown_fields_are_named_deterministically() -> None:
    payload = b'{"v":1,"id":"a","op":"deposit_cancel","zz":1,"aa":2}'
    assert error_of(parse_event, payload).field == "aa"


# --- displays -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "key", "value", "reason"),
    [
        (SHOW, "op", _MISSING, ErrorReason.MISSING_FIELD),
        (SHOW, "op", "clear", ErrorReason.UNKNOWN_OP),
        (SHOW, "op", "keypad", ErrorReason.UNKNOWN_OP),
        (SHOW, "text", _MISSING, ErrorReason.MISSING_FIELD),
        (SHOW, "text", "", ErrorReason.BAD_FORMAT),
        (SHOW, "text", "x" * 201, ErrorReason.BAD_FORMAT),
        (SHOW, "text", "line\nbreak", ErrorReason.BAD_FORMAT),
        (SHOW, "text", "tab\there", ErrorReason.BAD_FORMAT),
        (SHOW, "text", "\u202eevil", ErrorReason.BAD_FORMAT),
        (SHOW, "text", "zero\u200bwidth", ErrorReason.BAD_FORMAT),
        (SHOW, "text", "\ud800", ErrorReason.BAD_FORMAT),
        (SHOW, "text", "nbsp\u00a0", ErrorReason.BAD_FORMAT),
        (SHOW, "text", "\x1b[2J", ErrorReason.BAD_FORMAT),
        (SHOW, "text", 7, ErrorReason.BAD_TYPE),
        (SHOW, "tone", _MISSING, ErrorReason.MISSING_FIELD),
        (SHOW, "tone", "warn", ErrorReason.UNKNOWN_VALUE),
        (SHOW, "tone", "OK", ErrorReason.UNKNOWN_VALUE),
        (SHOW, "tone", None, ErrorReason.BAD_TYPE),
        (SHOW, "ref", None, ErrorReason.BAD_TYPE),
        (SHOW, "compartment", None, ErrorReason.BAD_TYPE),
        (SHOW, "compartment", 0, ErrorReason.OUT_OF_RANGE),
        (SHOW, "compartment", 256, ErrorReason.OUT_OF_RANGE),
        (SHOW, "compartment", 10**400, ErrorReason.OUT_OF_RANGE),
        (SHOW, "compartment", True, ErrorReason.BAD_TYPE),
        (SHOW, "compartment", 3.0, ErrorReason.BAD_TYPE),
        (SHOW, "compartment", "3", ErrorReason.BAD_TYPE),
        (SHOW, "courier", True, ErrorReason.UNKNOWN_FIELD),
        (SHOW, "id", "x", ErrorReason.UNKNOWN_FIELD),
        (SHOW, "beep", 1, ErrorReason.UNKNOWN_FIELD),
        (SESSION, "courier", _MISSING, ErrorReason.MISSING_FIELD),
        (SESSION, "courier", 1, ErrorReason.BAD_TYPE),
        (SESSION, "courier", "true", ErrorReason.BAD_TYPE),
        (SESSION, "courier", False, ErrorReason.INCONSISTENT),
        (SESSION, "company", None, ErrorReason.BAD_TYPE),
        (SESSION, "company", "", ErrorReason.BAD_FORMAT),
        (SESSION, "company", "c" * 65, ErrorReason.BAD_FORMAT),
        (SESSION, "company", "SF\nExpress", ErrorReason.BAD_FORMAT),
        (SESSION, "company", ["SF"], ErrorReason.BAD_TYPE),
        (SESSION, "text", "hi", ErrorReason.UNKNOWN_FIELD),
    ],
)
def test_display_rejections(
    document: dict[str, Any], key: str, value: object, reason: ErrorReason
) -> None:
    error = error_of(parse_display, with_field(document, key, value))
    # courier:false with a company is the company's fault: a closed session has none.
    expected_field = "company" if reason is ErrorReason.INCONSISTENT else key
    assert (error.reason, error.field) == (reason, expected_field)


def test_display_optionals_may_be_absent_and_bounds_are_inclusive() -> None:
    bare = {k: v for k, v in SHOW.items() if k not in ("ref", "compartment")}
    assert parse_display(json.dumps(bare).encode()) == ShowDisplay(text="Hello", tone=Tone.INFO)
    longest = parse_display(with_field(SHOW, "text", "é" * MAX_TEXT_CHARS))
    assert isinstance(longest, ShowDisplay)
    assert len(longest.text) == MAX_TEXT_CHARS
    edges = [parse_display(with_field(SHOW, "compartment", n)) for n in (1, 255)]
    assert [d.compartment for d in edges if isinstance(d, ShowDisplay)] == [1, 255]
    company = parse_display(with_field(SESSION, "company", "c" * MAX_COMPANY_CHARS))
    assert company == SessionDisplay.opened("c" * MAX_COMPANY_CHARS)
    assert parse_display(with_field(SESSION, "company", _MISSING)) == SessionDisplay.opened()


# --- state ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "key", "value", "reason"),
    [
        (ONLINE, "online", _MISSING, ErrorReason.MISSING_FIELD),
        (ONLINE, "online", 1, ErrorReason.BAD_TYPE),
        (ONLINE, "online", "true", ErrorReason.BAD_TYPE),
        (ONLINE, "fw", _MISSING, ErrorReason.MISSING_FIELD),
        (ONLINE, "fw", "", ErrorReason.BAD_FORMAT),
        (ONLINE, "fw", "1.0 beta", ErrorReason.BAD_FORMAT),
        (ONLINE, "fw", 1.0, ErrorReason.BAD_TYPE),
        (ONLINE, "boot", "5f3a9c01", ErrorReason.UNKNOWN_FIELD),
        (OFFLINE, "fw", "sim-1.0", ErrorReason.UNKNOWN_FIELD),
        (OFFLINE, "since", 3, ErrorReason.UNKNOWN_FIELD),
    ],
)
def test_state_rejections(
    document: dict[str, Any], key: str, value: object, reason: ErrorReason
) -> None:
    error = error_of(parse_state, with_field(document, key, value))
    assert (error.reason, error.field) == (reason, key)


# --- frames ---------------------------------------------------------------------------------------

JPEG = JPEG_MAGIC + b"\xe0rest of a jpeg"
PNG = PNG_MAGIC + b"rest of a png"


def test_frames_are_recognised_by_magic_bytes() -> None:
    assert parse_frame(JPEG, device="term-a") == Frame("term-a", FrameFormat.JPEG, JPEG)
    assert parse_frame(bytearray(PNG), device="t") == Frame("t", FrameFormat.PNG, PNG)
    assert parse_frame(memoryview(JPEG_MAGIC), device="t").data == JPEG_MAGIC
    assert parse_frame(PNG_MAGIC, device="t").size == len(PNG_MAGIC)
    assert sniff_frame_format(b"\xff\xd8") is None
    assert sniff_frame_format(PNG_MAGIC[:7]) is None


def test_frame_size_bound_is_inclusive() -> None:
    largest = JPEG_MAGIC + bytes(MAX_FRAME_BYTES - len(JPEG_MAGIC))
    assert parse_frame(largest, device="t").size == MAX_FRAME_BYTES
    error = error_of(lambda p: parse_frame(p, device="t"), largest + b"\0")
    assert error.reason is ErrorReason.TOO_LARGE


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff",
        b"\xff\xd8",
        b"\xff\xd8\x00\xff",
        PNG_MAGIC[:7],
        b"\x89PNG\r\n\x1a\x00" + bytes(8),
        b"GIF89a" + bytes(8),
        b"BM" + bytes(8),
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        b"\x00" + JPEG,
        b'{"v":1}',
    ],
)
def test_frames_without_known_magic_are_refused(payload: bytes) -> None:
    error = error_of(lambda p: parse_frame(p, device="t"), payload)
    assert error.reason is ErrorReason.BAD_FRAME


def test_frame_repr_does_not_dump_the_image() -> None:
    frame = parse_frame(JPEG + bytes(100_000), device="term-a")
    assert repr(frame) == "Frame(device='term-a', format=<FrameFormat.JPEG: 'jpeg'>, size=100018)"


@pytest.mark.parametrize(
    ("build", "reason", "field"),
    [
        (lambda: Frame("a b", FrameFormat.JPEG, JPEG), ErrorReason.BAD_FORMAT, "device"),
        (lambda: Frame("t", "jpeg", JPEG), ErrorReason.BAD_TYPE, "format"),
        (lambda: Frame("t", FrameFormat.JPEG, bytearray(JPEG)), ErrorReason.BAD_TYPE, "data"),
        (lambda: Frame("t", FrameFormat.PNG, JPEG), ErrorReason.BAD_FRAME, "data"),
        (lambda: Frame("t", FrameFormat.JPEG, PNG), ErrorReason.BAD_FRAME, "data"),
        (lambda: parse_frame(JPEG, device=""), ErrorReason.BAD_FORMAT, "device"),
    ],
)
def test_invalid_frames_cannot_be_built(
    build: Callable[[], object], reason: ErrorReason, field: str
) -> None:
    with pytest.raises(TerminalProfileError) as caught:
        build()
    assert (caught.value.reason, caught.value.field) == (reason, field)


# --- invalid messages cannot be built -------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: KeypadEvent(id="", text="123456"),
        lambda: KeypadEvent(id="a", text="12345"),
        lambda: KeypadEvent(id="a", text=123456),
        lambda: DepositEvent(id="a", size="M", unit="1-201"),
        lambda: DepositEvent(id="a", size=LockerSize.M, unit=""),
        lambda: DepositRetryEvent(id="a" * 33),
        lambda: DepositCancelEvent(id=None),
        lambda: CourierLogoutEvent(id="x y"),
        lambda: ShowDisplay(text="", tone=Tone.OK),
        lambda: ShowDisplay(text="hi", tone="ok"),
        lambda: ShowDisplay(text="hi", tone=Tone.OK, ref=""),
        lambda: ShowDisplay(text="hi", tone=Tone.OK, compartment=0),
        lambda: ShowDisplay(text="hi", tone=Tone.OK, compartment=True),
        lambda: SessionDisplay(courier=1),
        lambda: SessionDisplay(courier=False, company="SF"),
        lambda: SessionDisplay.opened(""),
        lambda: TerminalState(fw=""),
    ],
)
def test_invalid_messages_cannot_be_constructed(build: Callable[[], object]) -> None:
    with pytest.raises(TerminalProfileError):
        build()


def test_messages_are_frozen_and_slotted() -> None:
    event = KeypadEvent(id="a", text="123456")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = "654321"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert not hasattr(parse_frame(JPEG, device="t"), "__dict__")


def test_profile_error_is_a_value_error_with_data() -> None:
    error = error_of(parse_display, with_field(SHOW, "tone", "loud"))
    assert isinstance(error, ValueError)
    assert error.reason == "unknown_value"
    assert error.field == "tone"
    assert error.message_id is None
    assert "tone" in str(error)


# --- the fuzz invariant ---------------------------------------------------------------------------


@pytest.mark.parametrize("parser", PARSERS)
@given(payload=st.binary(max_size=MAX_DISPLAY_BYTES + 16))
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


@given(message=events | displays | states, data=st.data())
def test_fuzz_one_field_of_a_valid_message_replaced(message: Message, data: st.DataObject) -> None:
    document = json.loads(encode(message))
    key = data.draw(st.sampled_from(sorted(document)))
    document[key] = data.draw(json_values)
    assert_parses_or_refuses(PARSER_FOR[type(message)], json.dumps(document).encode())


@given(message=events | displays | states, key=st.text(max_size=12), value=json_values)
def test_fuzz_any_extra_key_is_refused(message: Message, key: str, value: object) -> None:
    document = json.loads(encode(message))
    if key in document:
        return
    document[key] = value
    error = error_of(PARSER_FOR[type(message)], json.dumps(document).encode())
    assert error.reason in {ErrorReason.UNKNOWN_FIELD, ErrorReason.TOO_LARGE}


@pytest.mark.parametrize("parser", PARSERS)
@given(message=events | displays | states, cut=st.integers(0, 400))
def test_fuzz_truncated_messages(parser: Parser, message: Message, cut: int) -> None:
    wire = encode(message)
    assert_parses_or_refuses(parser, wire[: min(cut, len(wire))])


@given(payload=st.binary(max_size=64) | frames.map(lambda f: f.data[: len(f.data) // 2]))
def test_fuzz_frames(payload: bytes) -> None:
    try:
        frame = parse_frame(payload, device="term-a")
    except TerminalProfileError as exc:
        reason: ErrorReason | None = exc.reason
    else:
        reason = None
    if reason is not None:
        assert reason is ErrorReason.BAD_FRAME
        assert sniff_frame_format(payload) is None
        return
    assert frame.data == payload
    assert payload.startswith(JPEG_MAGIC if frame.format is FrameFormat.JPEG else PNG_MAGIC)
