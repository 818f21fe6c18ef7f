"""The stream decoder: whole buffers, one byte at a time, trailing data, noise; round trip; fuzz."""

from __future__ import annotations

import contextlib
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devices.dlt645 import (
    MAX_FRAME,
    Address,
    Decoder,
    Dlt645Error,
    ErrorFlags,
    ErrorReply,
    Frame,
    Framer,
    ReadAddressRequest,
    ReadReply,
    ReadRequest,
    Reason,
    RequestFramer,
    TimeSync,
    decode,
    encode,
)
from devices.serialbus import RequestFramer as RequestFramerProtocol
from tests.devices.dlt645.strategies import frames

PLATE = Address("001500076004")
READ = bytes.fromhex("68 04 60 07 00 15 00 68 11 04 33 33 34 33 32 16")
REPLY = bytes.fromhex("68 04 60 07 00 15 00 68 91 08 33 33 34 33 89 67 45 33 1e 16")
READ_FRAME = ReadRequest(PLATE, 0x00010000)
REPLY_FRAME = ReadReply(PLATE, 0x00010000, bytes.fromhex("56 34 12 00"))


def feed_all(decoder: Decoder, data: bytes) -> list[Frame]:
    return decoder.feed(data)


def feed_bytewise(decoder: Decoder, data: bytes) -> list[Frame]:
    out: list[Frame] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    return out


def tr(data: bytes, expected: list[Frame]) -> None:
    """Like h11's tr(): the whole buffer, one byte at a time, and with trailing data."""
    assert feed_all(Decoder(), data) == expected
    assert feed_bytewise(Decoder(), data) == expected
    # Trailing data: the start of another frame stays buffered, and completes later.
    decoder = Decoder()
    assert decoder.feed(data + READ[:7]) == expected
    assert decoder.buffered == 7
    assert decoder.feed(READ[7:]) == [READ_FRAME]
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (READ, [READ_FRAME]),
        (REPLY, [REPLY_FRAME]),
        (b"\xfe\xfe\xfe\xfe" + READ, [READ_FRAME]),
        (READ + REPLY, [READ_FRAME, REPLY_FRAME]),
        (b"", []),
    ],
)
def test_three_ways(data: bytes, expected: list[Frame]) -> None:
    tr(data, expected)


GARBAGE = [
    b"\x00\xff\x13",
    b"\x68",  # a lone start byte
    b"\x68\x04\x60\x07",  # the start of a frame that never finishes
    b"\x68\x11\x11\x11\x11\x11\x11\x68\x11\xc8",  # a plausible header with L = 200
    b"\x68\x11\x11\x11\x11\x11\x11\x68\x11\xc9",  # L = 201: too long
    b"\x16\x16\xfe",
    READ[:-2] + b"\x00\x16",  # a frame with a bad checksum
]


@pytest.mark.parametrize("noise", GARBAGE)
def test_garbage_before_and_after(noise: bytes) -> None:
    tr(noise + READ + noise + REPLY, [READ_FRAME, REPLY_FRAME])


@pytest.mark.parametrize("noise", GARBAGE)
@pytest.mark.parametrize("cut", [1, 7, 9, 10, 12, 15])
def test_garbage_inside_a_frame_loses_only_that_frame(noise: bytes, cut: int) -> None:
    broken = READ[:cut] + noise + READ[cut:]
    # A stray 68 just before the frame's own 68 leaves the frame whole: then it must be found.
    survives = READ in broken
    tr(broken + REPLY, [READ_FRAME, REPLY_FRAME] if survives else [REPLY_FRAME])


def test_half_a_frame_stays_buffered() -> None:
    decoder = Decoder()
    assert decoder.feed(REPLY[:11]) == []
    assert decoder.buffered == 11
    assert decoder.feed(REPLY[11:]) == [REPLY_FRAME]
    assert decoder.buffered == 0


def test_a_bogus_length_does_not_stall_a_good_frame() -> None:
    # A plausible header claims 200 data bytes; the real reply behind it must not wait for them.
    decoder = Decoder()
    assert decoder.feed(b"\x68\x11\x11\x11\x11\x11\x11\x68\x91\xc8" + REPLY) == [REPLY_FRAME]
    assert decoder.buffered == 0


def test_counters() -> None:
    decoder = Decoder()
    frames = decoder.feed(b"\xfe\xfe\x00\x01" + READ[:-2] + b"\x00\x16" + REPLY)
    assert frames == [REPLY_FRAME]
    assert decoder.framer.checksum_errors == 1
    assert decoder.framer.frames == 1
    assert decoder.framer.garbage_bytes == 2 + len(READ)


def test_reset_forgets_a_partial_frame() -> None:
    decoder = Decoder()
    decoder.feed(READ[:9])
    decoder.reset()
    assert decoder.buffered == 0
    assert decoder.feed(REPLY) == [REPLY_FRAME]


def test_a_delimited_frame_that_does_not_parse_is_counted_not_raised() -> None:
    body = bytes.fromhex("68 04 60 07 00 15 00 68 11 03 33 33 34")
    bad = body + bytes([sum(body) & 0xFF, 0x16])  # a checksummed read with a 3-byte DI
    decoder = Decoder()
    assert decoder.feed(bad + REPLY) == [REPLY_FRAME]
    assert decoder.rejected == 1
    assert decoder.last_error is not None
    assert decoder.last_error.reason is Reason.BAD_LENGTH


def test_request_framer_passes_requests_and_drops_replies() -> None:
    framer: RequestFramerProtocol = RequestFramer()
    assert framer.feed(b"\xfe\xfe" + REPLY + READ[:5]) == []
    assert framer.feed(READ[5:] + b"\x00") == [READ]
    assert isinstance(framer, Framer)


def test_the_buffer_is_bounded() -> None:
    decoder = Decoder()
    for _ in range(100):
        decoder.feed(b"\x68\x11\x11\x11\x11\x11\x11\x68\x11\xc8" + b"\x00" * 50)
        assert decoder.buffered <= MAX_FRAME
    decoder.feed(b"\x00" * 10_000)
    assert decoder.buffered <= MAX_FRAME


# --- properties ----------------------------------------------------------------------------------


@given(frames)
def test_round_trip(frame: Frame) -> None:
    assert decode(encode(frame)) == frame


@given(st.lists(frames, max_size=4), st.integers(0, 4), st.data())
@settings(max_examples=200)
def test_stream_round_trip_in_random_chunks(
    sequence: list[Frame], preamble: int, data: st.DataObject
) -> None:
    wire = b"".join(encode(f, preamble=preamble) for f in sequence)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    decoder = Decoder()
    out: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        out += decoder.feed(wire[start:end])
    assert out == sequence
    assert decoder.buffered == 0


_NOT_68 = st.binary(max_size=40).map(lambda b: b.replace(b"\x68", b"\x00"))


@given(_NOT_68, frames, _NOT_68)
def test_a_frame_is_found_in_noise_without_start_bytes(
    before: bytes, frame: Frame, after: bytes
) -> None:
    assert Decoder().feed(before + encode(frame) + after) == [frame]


@given(st.binary(max_size=300))
@example(READ)
@example(REPLY[:-1])
@example(b"\x68" * 20)
def test_fuzz_decode_raises_only_its_own_error(data: bytes) -> None:
    try:
        frame = decode(data)
    except Dlt645Error:
        return
    # Whatever decodes is canonical: it encodes back to the very same bytes.
    assert encode(frame, preamble=data.count(b"\xfe", 0, 4)) == data


@given(st.lists(st.binary(max_size=64), max_size=10))
def test_fuzz_decoder_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    decoder = Decoder()
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            assert decode(encode(frame)) == frame
        assert decoder.buffered <= MAX_FRAME


@given(st.binary(max_size=300))
def test_fuzz_mutated_frames(noise: bytes) -> None:
    # Valid frames with bytes overwritten: parse or refuse, nothing else.
    frame = TimeSync(dt.datetime(2025, 1, 2, 3, 4, 5))
    wire = bytearray(encode(frame) + encode(ReadAddressRequest()))
    for i, b in enumerate(noise[: len(wire)]):
        if b & 1:
            wire[i] = b
    with contextlib.suppress(Dlt645Error):
        decode(bytes(wire))
    Decoder().feed(bytes(wire))


def test_error_reply_for_an_unknown_identifier_round_trips() -> None:
    reply = ErrorReply(PLATE, 0x11, ErrorFlags.NO_DATA)
    assert Decoder().feed(encode(reply, preamble=4)) == [reply]
    assert ReadReply.of(PLATE, 0x00900200, Decimal("12.34")).value == Decimal("12.34")
