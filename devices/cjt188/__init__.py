"""CJ/T 188-2004 water (and gas) meters: a sans-I/O codec and a simulated water meter.

`frame` is the link layer (typed frames, encode/decode, checksum), `stream` finds frames in a byte
stream through preambles and noise, `messages` gives the data meaning (read current data 901F,
read address 810A, valve control A017, error replies; configurable DI byte order), and `meter` is
a simulated water meter for the simulated bus. Nothing here does I/O. The wire format is in
docs/protocol-cjt188.md.
"""

from devices.cjt188.bcd import from_bcd, to_bcd
from devices.cjt188.errors import Cjt188ChecksumError, Cjt188Error, UnsupportedDataError
from devices.cjt188.frame import (
    WILDCARD_ADDRESS,
    Frame,
    Function,
    MeterAddress,
    MeterType,
    checksum,
    decode,
    encode,
)
from devices.cjt188.messages import (
    AddressReply,
    CurrentData,
    DataId,
    DiOrder,
    ErrorReply,
    Message,
    Quantity,
    ReadAddress,
    ReadCurrentData,
    Status,
    Unit,
    ValveAction,
    ValveControl,
    ValveReply,
    ValveState,
    from_frame,
    to_frame,
)
from devices.cjt188.meter import WaterMeter
from devices.cjt188.stream import Decoder, RequestFramer

__all__ = [
    "WILDCARD_ADDRESS",
    "AddressReply",
    "Cjt188ChecksumError",
    "Cjt188Error",
    "CurrentData",
    "DataId",
    "Decoder",
    "DiOrder",
    "ErrorReply",
    "Frame",
    "Function",
    "Message",
    "MeterAddress",
    "MeterType",
    "Quantity",
    "ReadAddress",
    "ReadCurrentData",
    "RequestFramer",
    "Status",
    "Unit",
    "UnsupportedDataError",
    "ValveAction",
    "ValveControl",
    "ValveReply",
    "ValveState",
    "WaterMeter",
    "checksum",
    "decode",
    "encode",
    "from_bcd",
    "from_frame",
    "to_bcd",
    "to_frame",
]
