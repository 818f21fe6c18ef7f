"""The RTU codec: CRC, hand-checked frames, validation, round trips, and pymodbus as the oracle.

The wire bytes in PROTOCOLS.md §2 were captured from pymodbus 3.16.1 on a pty; pymodbus's own
framer and PDU classes then check every frame hypothesis can think of, both directions.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from devices.errors import ChecksumError, FrameError
from devices.modbus import (
    ExceptionCode,
    ExceptionReply,
    Frame,
    FunctionCode,
    IllegalRequestError,
    ModbusCrcError,
    ModbusError,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
    crc16,
    decode_reply,
    decode_request,
    encode,
    with_crc,
)
from tests.devices.modbus.strategies import replies, requests

HOLDING = FunctionCode.READ_HOLDING_REGISTERS
INPUT = FunctionCode.READ_INPUT_REGISTERS

# --- CRC ------------------------------------------------------------------------------------


def test_crc_of_the_check_string() -> None:
    # The catalogue value of CRC-16/MODBUS for "123456789".
    assert crc16(b"123456789") == 0x4B37


def test_crc_goes_on_the_wire_low_byte_first() -> None:
    assert with_crc(bytes.fromhex("01 04 00 00 00 02")) == bytes.fromhex("01 04 00 00 00 02 71 cb")


@given(st.binary(max_size=300))
def test_crc_over_a_whole_adu_is_zero(body: bytes) -> None:
    assert crc16(with_crc(body)) == 0


@given(st.binary(max_size=300))
def test_crc_agrees_with_pymodbus(body: bytes) -> None:
    assert crc16(body) == int.from_bytes(FramerRTU.compute_CRC(body).to_bytes(2, "big"), "little")


# --- hand-checked frames (PROTOCOLS.md §2, captured from pymodbus 3.16.1) ---------------------

HAND_CHECKED: list[tuple[str, Frame]] = [
    ("01 04 00 00 00 02 71 cb", ReadRequest(1, INPUT, 0x0000, 2)),
    ("01 04 04 43 65 cc cd 6a 8a", ReadReply(1, INPUT, (0x4365, 0xCCCD))),
    ("01 04 01 56 00 02 90 27", ReadRequest(1, INPUT, 0x0156, 2)),
    ("01 04 04 44 9b 08 00 99 5b", ReadReply(1, INPUT, (0x449B, 0x0800))),
    ("01 10 00 14 00 02 04 40 00 00 00 e6 90", WriteMultipleRequest(1, 0x0014, (0x4000, 0x0000))),
    ("01 10 00 14 00 02 01 cc", WriteMultipleReply(1, 0x0014, 2)),
    ("09 84 04 c3 01", ExceptionReply(9, 0x04, ExceptionCode.SERVER_DEVICE_FAILURE)),
]


@pytest.mark.parametrize(("wire", "frame"), HAND_CHECKED)
def test_hand_checked_frames(wire: str, frame: Frame) -> None:
    adu = bytes.fromhex(wire)
    assert encode(frame) == adu
    decode = decode_request if isinstance(frame, Request) else decode_reply
    assert decode(adu) == frame


def test_the_hand_checked_values() -> None:
    volts = decode_reply(bytes.fromhex("01 04 04 43 65 cc cd 6a 8a"))
    energy = decode_reply(bytes.fromhex("01 04 04 44 9b 08 00 99 5b"))
    assert isinstance(volts, ReadReply)
    assert isinstance(energy, ReadReply)
    assert struct.unpack(">f", struct.pack(">2H", *volts.values))[0] == pytest.approx(229.8)
    assert struct.unpack(">f", struct.pack(">2H", *energy.values))[0] == 1240.25
    write = decode_request(bytes.fromhex("01 10 00 14 00 02 04 40 00 00 00 e6 90"))
    assert isinstance(write, WriteMultipleRequest)
    assert struct.unpack(">f", struct.pack(">2H", *write.values))[0] == 2.0


def test_write_single_request_and_its_echo() -> None:
    request = WriteSingleRequest(3, 0x0010, 1)
    adu = encode(request)
    assert adu == with_crc(bytes.fromhex("03 06 00 10 00 01"))
    assert decode_request(adu) == request
    assert decode_reply(adu) == WriteSingleReply(3, 0x0010, 1)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: ReadRequest(1, INPUT, 0, 0), ExceptionCode.ILLEGAL_DATA_VALUE),
        (lambda: ReadRequest(1, INPUT, 0, 126), ExceptionCode.ILLEGAL_DATA_VALUE),
        (lambda: ReadRequest(1, HOLDING, 0xFFFF, 2), ExceptionCode.ILLEGAL_DATA_ADDRESS),
        (lambda: WriteMultipleRequest(1, 0, ()), ExceptionCode.ILLEGAL_DATA_VALUE),
        (lambda: WriteMultipleRequest(1, 0, (0,) * 124), ExceptionCode.ILLEGAL_DATA_VALUE),
        (lambda: WriteMultipleRequest(1, 0xFFFF, (1, 2)), ExceptionCode.ILLEGAL_DATA_ADDRESS),
    ],
)
def test_requests_a_server_must_refuse(make: object, code: ExceptionCode) -> None:
    assert callable(make)
    with pytest.raises(IllegalRequestError) as caught:
        make()
    assert caught.value.code == code
    assert caught.value.unit == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReadRequest(0, INPUT, 0, 1),  # nobody answers a broadcast read
        lambda: ReadRequest(248, INPUT, 0, 1),
        lambda: ReadRequest(1, 5, 0, 1),  # type: ignore[arg-type]
        lambda: ReadRequest(1, INPUT, 0x10000, 1),
        lambda: WriteSingleRequest(1, 0, 0x10000),
        lambda: WriteSingleRequest(1, -1, 0),
        lambda: WriteMultipleRequest(1, 0, (0x10000,)),
        lambda: ReadReply(1, INPUT, ()),
        lambda: ReadReply(0, INPUT, (1,)),
        lambda: WriteMultipleReply(1, 0, 0),
        lambda: ExceptionReply(1, 0x83, 2),
        lambda: ExceptionReply(1, 3, 0),
    ],
)
def test_invalid_frames_cannot_exist(make: object) -> None:
    assert callable(make)
    with pytest.raises(ModbusError):
        make()


def test_errors_are_device_errors_and_say_whose_checksum() -> None:
    with pytest.raises(ModbusCrcError) as caught:
        decode_reply(bytes.fromhex("01 04 04 43 65 cc cd 6a 8b"))
    assert isinstance(caught.value, ChecksumError)
    assert isinstance(caught.value, FrameError)
    assert caught.value.data == bytes.fromhex("01 04 04 43 65 cc cd 6a 8b")


@pytest.mark.parametrize(
    ("body", "function", "code"),
    [
        ("01 01 00 00 00 08", 0x01, ExceptionCode.ILLEGAL_FUNCTION),  # read coils: not a meter's
        ("01 2b 0e 01 00", 0x2B, ExceptionCode.ILLEGAL_FUNCTION),
        ("01 04 00 00 00 7e", 0x04, ExceptionCode.ILLEGAL_DATA_VALUE),  # 126 registers
        ("01 10 00 00 00 02 02 00 01", 0x10, ExceptionCode.ILLEGAL_DATA_VALUE),  # count ≠ bytes
    ],
)
def test_decode_request_says_which_exception_a_server_owes(
    body: str, function: int, code: ExceptionCode
) -> None:
    adu = with_crc(bytes.fromhex(body))
    with pytest.raises(IllegalRequestError) as caught:
        decode_request(adu)
    assert (caught.value.unit, caught.value.function, caught.value.code) == (1, function, code)
    assert caught.value.data == adu


@pytest.mark.parametrize(
    "body",
    [
        "01 04 00 00 00",  # short
        "01 84 02",  # an exception reply is not a request
        "f8 04 00 00 00 01",  # reserved unit id
        "01 00 00 00",  # function 0
        "01 10 00 00 00 01 02 00",  # byte count says more than there is
    ],
)
def test_decode_request_refuses_what_is_not_a_request(body: str) -> None:
    with pytest.raises(ModbusError) as caught:
        decode_request(with_crc(bytes.fromhex(body)))
    assert not isinstance(caught.value, IllegalRequestError)


@pytest.mark.parametrize(
    "body",
    [
        "01 04 03 00 00 00",  # odd byte count
        "01 04 04 00 00",  # byte count says more than there is
        "01 03 00",  # empty read reply
        "01 84",  # exception reply without its code
        "01 84 00",  # exception code 0
        "01 06 00 00 00",  # short echo
        "01 01 01 00",  # no typed reply for read coils
        "00 04 02 00 00",  # unit 0 never answers
    ],
)
def test_decode_reply_refuses_malformed_replies(body: str) -> None:
    with pytest.raises(ModbusError):
        decode_reply(with_crc(bytes.fromhex(body)))


def test_exception_reply_names_standard_codes_only() -> None:
    assert ExceptionReply(1, 3, 2).exception is ExceptionCode.ILLEGAL_DATA_ADDRESS
    assert ExceptionReply(1, 3, 0x42).exception is None


# --- round trips ----------------------------------------------------------------------------


@given(requests)
def test_request_round_trip(request: Request) -> None:
    assert decode_request(encode(request)) == request


@given(replies)
def test_reply_round_trip(reply: Reply) -> None:
    assert decode_reply(encode(reply)) == reply


@given(st.binary(max_size=300))
def test_fuzz_whole_adu_decoders_raise_only_modbus_errors(data: bytes) -> None:
    for decode in (decode_request, decode_reply):
        try:
            frame = decode(data)
        except ModbusError:
            continue
        assert encode(frame) == data


# --- pymodbus as the oracle -----------------------------------------------------------------


def _pymodbus_pdu(frame: Frame) -> ModbusPDU:
    match frame:
        case ReadRequest(unit, function, address, count):
            cls = ReadHoldingRegistersRequest if function == HOLDING else ReadInputRegistersRequest
            return cls(dev_id=unit, address=address, count=count)
        case WriteSingleRequest(unit, address, value):
            return WriteSingleRegisterRequest(dev_id=unit, address=address, registers=[value])
        case WriteMultipleRequest(unit, address, values):
            return WriteMultipleRegistersRequest(
                dev_id=unit, address=address, registers=list(values)
            )
        case ReadReply(unit, function, values):
            reply_cls = (
                ReadHoldingRegistersResponse if function == HOLDING else ReadInputRegistersResponse
            )
            return reply_cls(dev_id=unit, registers=list(values))
        case WriteSingleReply(unit, address, value):
            return WriteSingleRegisterResponse(dev_id=unit, address=address, registers=[value])
        case WriteMultipleReply(unit, address, count):
            return WriteMultipleRegistersResponse(dev_id=unit, address=address, count=count)
        case ExceptionReply(unit, function, code):
            return ExceptionResponse(function, code, device_id=unit)
    raise AssertionError(frame)


@given(st.one_of(requests, replies))
def test_our_bytes_are_pymodbus_bytes(frame: Frame) -> None:
    assert encode(frame) == FramerRTU(DecodePDU(False)).buildFrame(_pymodbus_pdu(frame))


@given(requests)
def test_pymodbus_server_side_decodes_our_requests(request: Request) -> None:
    adu = encode(request)
    used, pdu = FramerRTU(DecodePDU(True)).handleFrame(adu, 0, 0)
    assert used == len(adu)
    assert pdu is not None
    assert (pdu.dev_id, pdu.function_code, pdu.address) == (
        request.unit,
        int(request.function) if isinstance(request, ReadRequest) else adu[1],
        request.address,
    )
    if isinstance(request, ReadRequest):
        assert pdu.count == request.count
    else:
        assert list(pdu.registers) == (
            [request.value] if isinstance(request, WriteSingleRequest) else list(request.values)
        )


@given(replies)
def test_we_decode_what_pymodbus_builds(reply: Reply) -> None:
    adu = FramerRTU(DecodePDU(True)).buildFrame(_pymodbus_pdu(reply))
    assert decode_reply(adu) == reply
