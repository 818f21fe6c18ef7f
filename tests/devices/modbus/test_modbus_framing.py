"""Finding frames in a stream: whole, byte by byte, with trailing data, and through noise.

Every decoder is fed three ways (h11's ``tr()``): the whole buffer at once, one byte at a time,
and with trailing bytes after the frame; then noise before, inside and after frames, hypothesis
round trips through the stream, and the fuzz invariant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.diag_message import ReturnQueryDataRequest
from pymodbus.pdu.file_message import ReadFifoQueueRequest
from pymodbus.pdu.other_message import (
    GetCommEventCounterRequest,
    GetCommEventLogRequest,
    ReadExceptionStatusRequest,
    ReportDeviceIdRequest,
)
from pymodbus.pdu.register_message import (
    MaskWriteRegisterRequest,
    ReadWriteMultipleRegistersRequest,
)

from devices.modbus import (
    ExceptionReply,
    FunctionCode,
    ModbusError,
    ReadReply,
    ReadRequest,
    Reply,
    ReplyDecoder,
    Request,
    RequestFramer,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
    decode_request,
    encode,
    inter_frame_gap,
    with_crc,
)
from devices.serialbus import RequestFramer as RequestFramerProtocol
from tests.devices.modbus.strategies import requests

INPUT = FunctionCode.READ_INPUT_REGISTERS
VOLTS_REQUEST = ReadRequest(1, INPUT, 0x0000, 2)
VOLTS = bytes.fromhex("01 04 04 43 65 cc cd 6a 8a")
VOLTS_REPLY = ReadReply(1, INPUT, (0x4365, 0xCCCD))
READ = bytes.fromhex("01 04 00 00 00 02 71 cb")
WRITE = bytes.fromhex("01 10 00 14 00 02 04 40 00 00 00 e6 90")


def feed_whole(feed: Callable[[bytes], Sequence[object]], data: bytes) -> list[object]:
    return list(feed(data))


def feed_bytewise(feed: Callable[[bytes], Sequence[object]], data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        out += feed(data[i : i + 1])
    return out


FEEDS = [feed_whole, feed_bytewise]


# --- the reply decoder ------------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS)
def test_reply_whole_and_bytewise(feed: Callable[..., list[object]]) -> None:
    decoder = ReplyDecoder(VOLTS_REQUEST)
    assert feed(decoder.feed, VOLTS) == [VOLTS_REPLY]
    assert decoder.pending == b""
    assert (decoder.discarded, decoder.crc_errors) == (0, 0)


def test_reply_with_trailing_data_keeps_a_possible_start() -> None:
    decoder = ReplyDecoder(VOLTS_REQUEST)
    assert decoder.feed(VOLTS + b"\x01\x04") == [VOLTS_REPLY]
    assert decoder.pending == b"\x01\x04"  # could begin a second reply; kept, not dropped
    decoder = ReplyDecoder(VOLTS_REQUEST)
    assert decoder.feed(VOLTS + b"\x00\xff") == [VOLTS_REPLY]
    assert decoder.pending == b""  # cannot begin a reply from unit 1: noise, dropped
    assert decoder.discarded == 2


def test_reply_half_a_frame_waits() -> None:
    decoder = ReplyDecoder(VOLTS_REQUEST)
    assert decoder.feed(VOLTS[:5]) == []
    assert decoder.pending == VOLTS[:5]
    assert decoder.feed(VOLTS[5:]) == [VOLTS_REPLY]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize(
    "noise",
    [
        b"\x00",
        b"\xff\xfe\x01",
        b"\x01\x04",  # a false start: unit and function, then the real frame
        b"\x01\x04\x04\x00",  # a false start with the right byte count
        bytes.fromhex("01 04 04 43 65 cc cd 6a 8b"),  # the reply with a bad CRC (a retry's echo)
    ],
)
def test_reply_after_noise(feed: Callable[..., list[object]], noise: bytes) -> None:
    decoder = ReplyDecoder(VOLTS_REQUEST)
    assert feed(decoder.feed, noise + VOLTS) == [VOLTS_REPLY]
    assert decoder.pending == b""
    assert decoder.discarded == len(noise)


def test_reply_with_noise_inside_is_dropped_and_counted() -> None:
    decoder = ReplyDecoder(VOLTS_REQUEST)
    damaged = VOLTS[:4] + b"\x99" + VOLTS[4:]  # a byte struck in by noise
    assert decoder.feed(damaged) == []
    assert decoder.crc_errors == 1
    # The hunt goes on: the retry's clean reply is found.
    assert decoder.feed(VOLTS) == [VOLTS_REPLY]


def test_reply_decoder_ignores_other_units_and_other_functions() -> None:
    decoder = ReplyDecoder(VOLTS_REQUEST)
    other_unit = encode(ReadReply(2, INPUT, (1, 2)))
    other_function = encode(ReadReply(1, FunctionCode.READ_HOLDING_REGISTERS, (1, 2)))
    other_count = encode(ReadReply(1, INPUT, (1, 2, 3)))
    assert decoder.feed(other_unit + other_function + other_count + VOLTS) == [VOLTS_REPLY]


def test_reply_decoder_takes_the_exception_reply() -> None:
    decoder = ReplyDecoder(VOLTS_REQUEST)
    assert decoder.feed(bytes.fromhex("01 84 02 c2 c1")) == [ExceptionReply(1, 4, 2)]


def test_write_replies_must_echo_the_request() -> None:
    request = WriteSingleRequest(3, 0x10, 1)
    assert ReplyDecoder(request).feed(encode(request)) == [WriteSingleReply(3, 0x10, 1)]
    wrong = encode(WriteSingleReply(3, 0x10, 0))
    decoder = ReplyDecoder(request)
    with pytest.raises(ModbusError):
        decoder.feed(wrong + encode(request))
    assert decoder.feed(b"") == [WriteSingleReply(3, 0x10, 1)]  # consumed, and goes on

    multiple = WriteMultipleRequest(1, 0x14, (0x4000, 0))
    decoder = ReplyDecoder(multiple)
    assert decoder.feed(bytes.fromhex("01 10 00 14 00 02 01 cc")) == [
        WriteMultipleReply(1, 0x14, 2)
    ]
    with pytest.raises(ModbusError):
        decoder.feed(encode(WriteMultipleReply(1, 0x14, 3)))


def test_no_reply_decoder_for_a_broadcast() -> None:
    with pytest.raises(ModbusError):
        ReplyDecoder(WriteSingleRequest(0, 0x10, 1))


def _replies_to(request: Request) -> st.SearchStrategy[Reply]:
    unit = request.unit
    if isinstance(request, ReadRequest):
        normal: st.SearchStrategy[Reply] = st.lists(
            st.integers(0, 0xFFFF), min_size=request.count, max_size=request.count
        ).map(lambda values: ReadReply(unit, request.function, tuple(values)))
        function = int(request.function)
    elif isinstance(request, WriteSingleRequest):
        normal = st.just(WriteSingleReply(unit, request.address, request.value))
        function = 6
    else:
        normal = st.just(WriteMultipleReply(unit, request.address, len(request.values)))
        function = 0x10
    return st.one_of(
        normal, st.integers(1, 255).map(lambda code: ExceptionReply(unit, function, code))
    )


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[Request, Reply]:
    request = draw(requests.filter(lambda r: r.unit != 0))
    return request, draw(_replies_to(request))


@given(exchanges(), st.binary(max_size=40), st.binary(max_size=40), st.data())
def test_reply_round_trip_through_noise_in_any_slicing(
    exchange: tuple[Request, Reply], before: bytes, after: bytes, data: st.DataObject
) -> None:
    request, reply = exchange
    stream = before + encode(reply) + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = ReplyDecoder(request)
    found: list[Reply] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        found += decoder.feed(stream[start:end])
    # The reply is found; noise can at most add a frame that also passes its CRC (1 in 65536).
    assert reply in found


@given(requests.filter(lambda r: r.unit != 0), st.binary(max_size=600))
def test_fuzz_reply_decoder_returns_replies_or_raises_modbus_error(
    request: Request, noise: bytes
) -> None:
    decoder = ReplyDecoder(request)
    try:
        for reply in decoder.feed(noise):
            assert reply.unit == request.unit
    except ModbusError:
        pass
    assert len(decoder.pending) < 256  # nothing waits for more than one maximal frame


# --- the request framer -----------------------------------------------------------------------


def test_request_framer_is_a_serialbus_framer() -> None:
    framer: RequestFramerProtocol = RequestFramer()
    assert framer.feed(READ) == [READ]


@pytest.mark.parametrize("feed", FEEDS)
def test_requests_whole_and_bytewise(feed: Callable[..., list[object]]) -> None:
    framer = RequestFramer()
    assert feed(framer.feed, READ + WRITE + READ) == [READ, WRITE, READ]
    assert framer.pending == b""


def test_requests_with_trailing_data() -> None:
    framer = RequestFramer()
    assert framer.feed(READ + WRITE[:7]) == [READ]
    assert framer.pending == WRITE[:7]
    assert framer.feed(WRITE[7:]) == [WRITE]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize(
    "noise",
    [
        b"\xff",  # a reserved unit id never starts a frame
        b"\x00\x00\x00",
        b"\x01\x10\x00\x00\x00\x7b\xf6",  # a false FC10 start claiming 246 more bytes
        bytes.fromhex("01 04 00 00 00 02 71 cc"),  # a request with a bad CRC
        VOLTS,  # another device's reply is not a request (its CRC fails as one)
    ],
)
def test_requests_after_noise(feed: Callable[..., list[object]], noise: bytes) -> None:
    framer = RequestFramer()
    assert feed(framer.feed, noise + READ + noise + WRITE) == [READ, WRITE]


def test_request_framer_counts_crc_errors_once() -> None:
    framer = RequestFramer()
    bad = bytes.fromhex("01 04 00 00 00 02 71 cc")
    for byte in bad:
        framer.feed(bytes([byte]))
    framer.feed(READ)
    assert framer.crc_errors == 1
    assert framer.discarded == len(bad)


def _pymodbus_request_frames() -> list[bytes]:
    pdus: Sequence[ModbusPDU] = [
        ReadCoilsRequest(dev_id=7, address=0, count=8),
        ReadDiscreteInputsRequest(dev_id=7, address=0, count=8),
        WriteSingleCoilRequest(dev_id=7, address=1, bits=[True]),
        WriteMultipleCoilsRequest(dev_id=7, address=1, bits=[True, False, True]),
        ReadExceptionStatusRequest(dev_id=7),
        ReturnQueryDataRequest(b"\x12\x34", dev_id=7),
        GetCommEventCounterRequest(dev_id=7),
        GetCommEventLogRequest(dev_id=7),
        ReportDeviceIdRequest(dev_id=7),
        MaskWriteRegisterRequest(address=2, and_mask=0xF0F0, or_mask=0x0101, dev_id=7),
        ReadWriteMultipleRegistersRequest(
            read_address=1, read_count=2, write_address=3, write_registers=[4, 5], dev_id=7
        ),
        ReadFifoQueueRequest(address=4, dev_id=7),
    ]
    return [FramerRTU(DecodePDU(False)).buildFrame(pdu) for pdu in pdus]


@pytest.mark.parametrize("adu", _pymodbus_request_frames(), ids=lambda adu: f"fc{adu[1]:02x}")
def test_request_framer_frames_every_function_pymodbus_sends(adu: bytes) -> None:
    # pymodbus's client is the oracle for the lengths of the functions we only refuse.
    framer = RequestFramer()
    assert feed_bytewise(framer.feed, adu + READ) == [adu, READ]


@given(st.lists(requests, min_size=1, max_size=4), st.lists(st.binary(max_size=12)), st.data())
def test_request_round_trip_through_noise(
    sent: list[Request], noise: list[bytes], data: st.DataObject
) -> None:
    frames = [encode(r) for r in sent]
    # Noise that is all 0xFF (a reserved unit id) cannot start a frame, so the result is exact.
    gaps = [b"\xff" * len(n) for n in noise] + [b""] * (len(frames) + 1)
    stream = b"".join(gap + frame for gap, frame in zip(gaps, [*frames, b""], strict=False))
    framer = RequestFramer()
    out = []
    step = data.draw(st.integers(1, 9))
    for i in range(0, len(stream), step):
        out += framer.feed(stream[i : i + step])
    assert [decode_request(f) for f in out] == sent


@given(st.binary(max_size=600))
def test_fuzz_request_framer_yields_only_crc_correct_frames(noise: bytes) -> None:
    framer = RequestFramer()
    for frame in framer.feed(noise):
        assert with_crc(frame[:-2]) == frame
        with contextlib.suppress(ModbusError):  # framed, but maybe a request to refuse
            decode_request(frame)
    assert len(framer.pending) < 270


# --- line timing ----------------------------------------------------------------------------


def test_inter_frame_gap() -> None:
    assert inter_frame_gap(9600) == pytest.approx(3.5 * 11 / 9600)
    assert inter_frame_gap(2400) == pytest.approx(0.016, abs=1e-4)
    assert inter_frame_gap(115200) == 0.00175
    with pytest.raises(ValueError, match="baud"):
        inter_frame_gap(0)


# --- why we frame ourselves (docs/protocol-modbus.md) ---------------------------------------


@pytest.mark.parametrize(
    "noise",
    [b"\x00", b"\x01\x04\x04\x00", bytes.fromhex("01 04 04 43 65 cc cd 6a 8b")],
    ids=["one-zero-byte", "false-start", "bad-crc-copy"],
)
def test_pymodbus_framer_drops_a_reply_behind_noise_where_ours_finds_it(noise: bytes) -> None:
    # pymodbus 3.16.1's RTU framer discards its whole buffer when a candidate fails its CRC, so
    # one byte of line noise before a reply loses the reply; a master then waits for a timeout.
    used, pdu = FramerRTU(DecodePDU(False)).handleFrame(noise + VOLTS, 1, 0)
    assert (used, pdu) == (len(noise) + len(VOLTS), None)
    assert ReplyDecoder(VOLTS_REQUEST).feed(noise + VOLTS) == [VOLTS_REPLY]
