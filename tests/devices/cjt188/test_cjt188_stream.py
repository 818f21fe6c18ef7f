"""Finding CJ/T 188 frames in a stream: whole, byte by byte, trailing data, noise, fuzz."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.cjt188 import Decoder, Frame, RequestFramer, decode, encode
from devices.serialbus import RequestFramer as RequestFramerProtocol
from tests.devices.cjt188.known_frames import CLOSE_VALVE, READ, REPLY
from tests.devices.cjt188.strategies import frames

READ_B = bytes.fromhex(READ)
REPLY_B = bytes.fromhex(REPLY)
CLOSE_B = bytes.fromhex(CLOSE_VALVE)


def whole(feed: Callable[[bytes], Sequence[object]], data: bytes) -> list[object]:
    return list(feed(data))


def bytewise(feed: Callable[[bytes], Sequence[object]], data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        out += feed(data[i : i + 1])
    return out


FEEDS = [whole, bytewise]


@pytest.mark.parametrize("feed", FEEDS)
def test_decoder_whole_and_bytewise(feed: Callable[..., list[object]]) -> None:
    decoder = Decoder()
    stream = b"\xfe\xfe" + READ_B + b"\xfe\xfe\xfe\xfe" + REPLY_B + CLOSE_B
    assert feed(decoder.feed, stream) == [decode(READ_B), decode(REPLY_B), decode(CLOSE_B)]
    assert decoder.pending == b""
    assert decoder.discarded == 6  # the preambles
    assert decoder.checksum_errors == 0


def test_decoder_with_trailing_data() -> None:
    decoder = Decoder()
    assert decoder.feed(READ_B + REPLY_B[:12]) == [decode(READ_B)]
    assert decoder.pending == REPLY_B[:12]
    assert decoder.feed(REPLY_B[12:] + b"\xfe\xfe") == [decode(REPLY_B)]
    assert decoder.pending == b""


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize(
    "noise",
    [
        b"\x00\x16\x68",
        b"\x68\x10",  # a false start
        b"\x68\x10\x12\x00\x00\x00\x00\x00\x00\x01\xff",  # a false start promising 255 bytes
        READ_B[:-2] + b"\x3e\x16",  # a frame with a bad checksum
        READ_B[:7],  # half a frame, cut off
    ],
)
def test_decoder_through_noise(feed: Callable[..., list[object]], noise: bytes) -> None:
    decoder = Decoder()
    stream = noise + REPLY_B + noise + CLOSE_B + noise[:1]
    assert feed(decoder.feed, stream) == [decode(REPLY_B), decode(CLOSE_B)]


def test_noise_inside_a_frame_is_one_checksum_error() -> None:
    decoder = Decoder()
    damaged = bytearray(REPLY_B)
    damaged[20] ^= 0x40
    assert decoder.feed(bytes(damaged) + READ_B) == [decode(READ_B)]
    assert decoder.checksum_errors == 1


def test_request_framer_skips_replies_and_keeps_requests() -> None:
    framer: RequestFramerProtocol = RequestFramer()
    stream = b"\xfe\xfe" + READ_B + b"\xfe\xfe" + REPLY_B + CLOSE_B
    assert bytewise(framer.feed, stream) == [READ_B, CLOSE_B]


def test_request_framer_counts_damage() -> None:
    framer = RequestFramer()
    assert framer.feed(READ_B[:-2] + b"\x00\x16" + CLOSE_B) == [CLOSE_B]
    assert framer.checksum_errors == 1
    assert framer.feed(CLOSE_B[:5]) == []
    assert framer.pending == CLOSE_B[:5]


@given(
    st.lists(frames(), min_size=1, max_size=3),
    st.lists(st.binary(max_size=20), min_size=4, max_size=4),
    st.integers(1, 17),
)
def test_round_trip_through_noise_in_any_slicing(
    sent: list[Frame], noise: list[bytes], step: int
) -> None:
    # Noise without 68H cannot start a frame, so the frames come out exactly.
    gaps = [n.replace(b"\x68", b"\x69") for n in noise]
    stream = b"".join(gap + encode(frame) for gap, frame in zip(gaps, sent, strict=False))
    stream += gaps[-1]
    decoder = Decoder()
    found: list[Frame] = []
    for i in range(0, len(stream), step):
        found += decoder.feed(stream[i : i + step])
    assert found == sent


@given(frames(), st.binary(max_size=30), st.binary(max_size=30))
def test_any_noise_around_a_frame(frame: Frame, before: bytes, after: bytes) -> None:
    found = bytewise(Decoder().feed, before + encode(frame) + after)
    assert frame in found  # noise can only add frames that also pass CS


@given(st.binary(max_size=600))
def test_fuzz_decoder_returns_frames_and_never_raises(noise: bytes) -> None:
    decoder = Decoder()
    for frame in decoder.feed(noise):
        assert isinstance(frame, Frame)
    assert len(decoder.pending) < 11 + 255 + 2
    framer = RequestFramer()
    for raw in framer.feed(noise):
        assert not decode(raw).reply
