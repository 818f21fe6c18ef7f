"""The stream decoder: whole buffer, one byte at a time, trailing data, garbage anywhere, bounds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devices.lockboard import (
    MAX_FRAME_LENGTH,
    BoardStatus,
    Decoder,
    Frame,
    OpenLock,
    PulseTime,
    QueryAllBoards,
    QueryBoard,
    QueryPulseTime,
    RequestFramer,
    SetPulseTime,
    encode,
)
from tests.devices.lockboard.lockboard_strategies import frames, noise


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def whole(data: bytes) -> tuple[list[Frame], Decoder]:
    decoder = Decoder()
    return decoder.feed(data), decoder


def bytewise(data: bytes) -> tuple[list[Frame], Decoder]:
    decoder = Decoder()
    out: list[Frame] = []
    for index in range(len(data)):
        out += decoder.feed(data[index : index + 1])
    return out, decoder


FEEDERS: list[Callable[[bytes], tuple[list[Frame], Decoder]]] = [whole, bytewise]

STATUS = BoardStatus(0, (True, True) + (False,) * 14, (True,) + (False,) * 15)
SOME: list[Frame] = [
    QueryBoard(0),
    OpenLock(1, 16),
    STATUS,
    QueryPulseTime(2),
    SetPulseTime(2, 600),
]
SOME_WIRE = b"".join(encode(frame) for frame in SOME)


@pytest.mark.parametrize("feed", FEEDERS)
def test_clean_stream(feed: Callable[[bytes], tuple[list[Frame], Decoder]]) -> None:
    found, decoder = feed(SOME_WIRE)
    assert found == SOME
    assert decoder.pending == 0
    assert decoder.discarded == 0


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("tail", ["02", "02 00", "02 00 35 03 00", "02 00 37 00 3C 03"])
def test_trailing_partial_frame_is_held_back(
    feed: Callable[[bytes], tuple[list[Frame], Decoder]], tail: str
) -> None:
    found, decoder = feed(SOME_WIRE + h(tail))
    assert found == SOME
    assert decoder.pending == len(h(tail))


def test_the_rest_of_a_held_back_frame_completes_it() -> None:
    decoder = Decoder()
    wire = encode(STATUS)
    assert decoder.feed(wire[:4]) == []
    assert decoder.feed(wire[4:]) == [STATUS]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize(
    "garbage",
    [
        "FF",
        "00 03 35",
        "02",  # a lone STX: with the next frame's STX as its CMD, it cannot be a frame
        "02 00",
        "02 00 35",  # a status header: its ETX offset lands on a byte that is not 03
        "02 00 30 03 36",  # a whole frame with a wrong SUM
        "02 00 35 03 00 01 00 03 3F",  # a status with a wrong SUM
        "02 00 32 03 37",  # right SUM, refused value (32H not to F0H)
        "03 03 03 02 02 02",
    ],
)
def test_garbage_before_between_and_after_frames(
    feed: Callable[[bytes], tuple[list[Frame], Decoder]], garbage: str
) -> None:
    junk = h(garbage)
    stream = junk + encode(SOME[0]) + junk + encode(SOME[2]) + junk + encode(SOME[4]) + junk
    found, decoder = feed(stream)
    assert found == [SOME[0], SOME[2], SOME[4]]
    # What is left is at most the trailing junk, held back in case it starts a frame.
    assert decoder.pending <= len(junk)
    assert decoder.discarded + decoder.pending == 4 * len(junk)


@pytest.mark.parametrize("feed", FEEDERS)
def test_garbage_inside_a_frame_loses_that_frame_only(
    feed: Callable[[bytes], tuple[list[Frame], Decoder]],
) -> None:
    status = encode(STATUS)
    torn = status[:5] + h("FF 02") + status[5:]  # noise in the middle of a status reply
    found, decoder = feed(encode(QueryBoard(0)) + torn + encode(PulseTime(0, 600)))
    assert found == [QueryBoard(0), PulseTime(0, 600)]
    assert decoder.pending == 0


def test_counters_tell_checksum_errors_from_refused_values() -> None:
    decoder = Decoder()
    assert decoder.feed(h("02 00 30 03 36") + h("02 00 32 03 37") + h("02 00 30 03 35")) == [
        QueryBoard(0)
    ]
    assert decoder.checksum_errors == 1
    assert decoder.rejected == 1
    assert decoder.discarded == 10


# A query for board 12 whose lock nibble (ignored) makes its SUM 03.
QUERY_ENDING_IN_03 = h("02 CE 30 03 03")


def test_a_stray_stx_that_swallows_a_frame_is_released_by_idle() -> None:
    # 02 00 35 asks for a 9-byte status; the real query after it ends with SUM 03, which sits
    # where that status would have its ETX, so the decoder waits for a ninth byte.
    decoder = Decoder()
    assert decoder.feed(h("02 00 35") + QUERY_ENDING_IN_03) == []
    assert decoder.pending == 8
    assert decoder.idle() == [QueryBoard(12)]
    assert decoder.pending == 0


def test_idle_and_reset_drop_what_cannot_complete() -> None:
    decoder = Decoder()
    assert decoder.feed(h("02 00 35 03")) == []
    assert decoder.idle() == []
    assert decoder.pending == 0
    decoder.feed(h("02 00"))
    decoder.reset()
    assert decoder.pending == 0
    assert decoder.discarded == 6


def test_request_framer_returns_raw_requests_and_skips_replies() -> None:
    framer = RequestFramer()
    query, status, open_1 = encode(QueryBoard(0)), encode(STATUS), encode(OpenLock(0, 1))
    out = framer.feed(b"\xff" + query + status + open_1[:3])
    assert out == [query]
    assert framer.feed(open_1[3:] + encode(QueryAllBoards())) == [open_1, h("02 F0 32 03 27")]
    assert framer.decoder.discarded == 1
    assert framer.feed(h("02 00 35") + QUERY_ENDING_IN_03) == []
    assert framer.idle() == [QUERY_ENDING_IN_03]


# --- properties -------------------------------------------------------------------------------


@given(st.lists(frames, max_size=8), st.lists(noise, min_size=9, max_size=9), st.data())
def test_frames_survive_noise_whole_and_in_random_chunks(
    sent: list[Frame], junk: list[bytes], data: st.DataObject
) -> None:
    stream = junk[0] + b"".join(encode(frame) + junk[i + 1] for i, frame in enumerate(sent))
    assert whole(stream)[0] == sent
    assert bytewise(stream)[0] == sent
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = Decoder()
    found: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        found += decoder.feed(stream[start:end])
    assert found == sent


@given(st.binary(max_size=300))
@example(h("02 00 35 02 00 30 03 35"))
@example(h("02 00 37 03 3C 03 7B 02"))
def test_fuzz_the_decoder_never_raises_and_stays_bounded(data: bytes) -> None:
    decoder = Decoder()
    found = decoder.feed(data)
    assert decoder.pending < MAX_FRAME_LENGTH
    emitted = sum(len(encode(frame)) for frame in found)
    assert decoder.discarded + decoder.pending + emitted == len(data)
    assert bytewise(data)[0] == found
    found += decoder.idle()
    assert decoder.pending == 0
