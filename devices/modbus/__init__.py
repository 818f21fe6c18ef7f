"""Modbus RTU meters: a sans-I/O RTU codec, register maps as data, and a simulated meter.

The codec is our own (see docs/protocol-modbus.md for why pymodbus is the test oracle and not a
dependency of this package): typed frames for FC03/04/06/10 and exception replies (`frames`),
CRC-16/MODBUS (`crc`), and stream framing that hunts through noise (`framing`). Register maps
(`registers`, `register_maps`) say what a device's registers mean; `reading` turns wanted names
into the fewest read requests and replies into `Decimal` values. `meter` is a simulated meter for
the simulated bus. Nothing here does I/O.
"""

from devices.modbus.codes import (
    BROADCAST,
    MAX_READ_COUNT,
    MAX_UNIT,
    MAX_WRITE_COUNT,
    MIN_UNIT,
    READ_FUNCTIONS,
    ExceptionCode,
    FunctionCode,
)
from devices.modbus.crc import crc16, with_crc
from devices.modbus.errors import (
    ExceptionReplyError,
    IllegalRequestError,
    ModbusCrcError,
    ModbusError,
    RegisterValueError,
)
from devices.modbus.frames import (
    ExceptionReply,
    Frame,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
    decode_reply,
    decode_request,
    encode,
)
from devices.modbus.framing import ReplyDecoder, RequestFramer, inter_frame_gap
from devices.modbus.meter import (
    Accumulator,
    ModbusMeter,
    sdm120_meter,
    sdm630_meter,
    water_meter,
)
from devices.modbus.reading import ReadBlock, plan_reads
from devices.modbus.register_maps import (
    MAPS,
    SDM120,
    SDM630,
    VALVE_CLOSED,
    VALVE_FAULT,
    VALVE_OPEN,
    WATER_METER,
)
from devices.modbus.registers import DataType, RegisterEntry, RegisterMap, WordOrder

__all__ = [
    "BROADCAST",
    "MAPS",
    "MAX_READ_COUNT",
    "MAX_UNIT",
    "MAX_WRITE_COUNT",
    "MIN_UNIT",
    "READ_FUNCTIONS",
    "SDM120",
    "SDM630",
    "VALVE_CLOSED",
    "VALVE_FAULT",
    "VALVE_OPEN",
    "WATER_METER",
    "Accumulator",
    "DataType",
    "ExceptionCode",
    "ExceptionReply",
    "ExceptionReplyError",
    "Frame",
    "FunctionCode",
    "IllegalRequestError",
    "ModbusCrcError",
    "ModbusError",
    "ModbusMeter",
    "ReadBlock",
    "ReadReply",
    "ReadRequest",
    "RegisterEntry",
    "RegisterMap",
    "RegisterValueError",
    "Reply",
    "ReplyDecoder",
    "Request",
    "RequestFramer",
    "WordOrder",
    "WriteMultipleReply",
    "WriteMultipleRequest",
    "WriteSingleReply",
    "WriteSingleRequest",
    "crc16",
    "decode_reply",
    "decode_request",
    "encode",
    "inter_frame_gap",
    "plan_reads",
    "sdm120_meter",
    "sdm630_meter",
    "water_meter",
    "with_crc",
]
