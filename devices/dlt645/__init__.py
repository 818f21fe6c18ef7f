"""DL/T 645-2007 (and 1997) electricity meters: a sans-I/O codec and a simulated meter.

The codec turns typed frames into bytes and back (`encode`, `decode`) and finds frames in a noisy
stream (`Decoder` for typed frames, `RequestFramer` for a simulated meter's raw requests). Values
are decoded by the identifier table (`IDENTIFIERS_2007`, `IDENTIFIERS_1997`) into `Decimal`, dates
and status words. `Dlt645Meter` is a `devices.serialbus.BusDevice`: a meter whose registers advance
with time, optionally prepaid, with a relay under 1CH control. No module here does I/O.

Modules: `address` (meter addresses), `control` (the control byte), `envelope` (68 … 16 and the
checksum), `frames` (typed frames), `codec` (frames ↔ bytes), `decoder` (stream hunting), `values`
(value formats), `identifiers` (the DI table), `relay` (the relay's state machine), `meter` (the
simulated meter), `errors`. The wire format is documented in ``docs/protocol-dlt645.md``.
"""

from devices.dlt645.address import BROADCAST, WILDCARD, Address
from devices.dlt645.codec import control_of, decode, encode
from devices.dlt645.control import Function
from devices.dlt645.decoder import Decoder, Framer, RequestFramer
from devices.dlt645.envelope import MAX_DATA, MAX_FRAME
from devices.dlt645.errors import Dlt645ChecksumError, Dlt645Error, Reason
from devices.dlt645.frames import (
    NO_OPERATOR,
    ErrorFlags,
    ErrorReply,
    FollowUpReply,
    Frame,
    RawFrame,
    ReadAddressReply,
    ReadAddressRequest,
    ReadFollowUp,
    ReadReply,
    ReadRequest,
    RelayAction,
    RelayControl,
    RelayReply,
    TimeSync,
    WriteReply,
    WriteRequest,
)
from devices.dlt645.identifiers import (
    IDENTIFIERS_1997,
    IDENTIFIERS_2007,
    Identifier,
    Standard,
    decode_value,
    encode_value,
    lookup,
)
from devices.dlt645.meter import DEFAULT_PASSWORD, Dlt645Meter
from devices.dlt645.relay import Relay, RemoteCommand
from devices.dlt645.values import (
    Block,
    Date,
    Digits,
    Format,
    MeterType,
    Number,
    Stamp,
    Status3,
    StatusWord3,
    Time,
    Value,
    Word,
)

__all__ = [
    "BROADCAST",
    "DEFAULT_PASSWORD",
    "IDENTIFIERS_1997",
    "IDENTIFIERS_2007",
    "MAX_DATA",
    "MAX_FRAME",
    "NO_OPERATOR",
    "WILDCARD",
    "Address",
    "Block",
    "Date",
    "Decoder",
    "Digits",
    "Dlt645ChecksumError",
    "Dlt645Error",
    "Dlt645Meter",
    "ErrorFlags",
    "ErrorReply",
    "FollowUpReply",
    "Format",
    "Frame",
    "Framer",
    "Function",
    "Identifier",
    "MeterType",
    "Number",
    "RawFrame",
    "ReadAddressReply",
    "ReadAddressRequest",
    "ReadFollowUp",
    "ReadReply",
    "ReadRequest",
    "Reason",
    "Relay",
    "RelayAction",
    "RelayControl",
    "RelayReply",
    "RemoteCommand",
    "RequestFramer",
    "Stamp",
    "Standard",
    "Status3",
    "StatusWord3",
    "Time",
    "TimeSync",
    "Value",
    "Word",
    "WriteReply",
    "WriteRequest",
    "control_of",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
    "lookup",
]
