"""The numbers Modbus gives names to: function codes, exception codes, unit ids and limits.

Only the four register functions a meter needs are typed frames here (03, 04, 06, 10). The other
public function codes are still known by their request length (see `framing`), so a simulated
device can frame them and refuse them with exception 01, as a real meter does.
"""

from __future__ import annotations

import enum

__all__ = [
    "BROADCAST",
    "EXCEPTION_FLAG",
    "MAX_READ_COUNT",
    "MAX_UNIT",
    "MAX_WRITE_COUNT",
    "MIN_UNIT",
    "READ_FUNCTIONS",
    "ExceptionCode",
    "FunctionCode",
]

#: Unit id 0 addresses every device; they act on a write and never answer.
BROADCAST = 0
#: Unit ids a device may have (248–255 are reserved by the standard).
MIN_UNIT = 1
MAX_UNIT = 247
#: Registers one read may ask for: 125 × 2 bytes is what fits in a 256-byte RTU ADU.
MAX_READ_COUNT = 125
#: Registers one FC10 write may carry (123 × 2 + 9 header/CRC bytes ≤ 256).
MAX_WRITE_COUNT = 123
#: Set in the function byte of an exception reply.
EXCEPTION_FLAG = 0x80


class FunctionCode(enum.IntEnum):
    """The function codes this codec has typed frames for."""

    READ_HOLDING_REGISTERS = 0x03
    READ_INPUT_REGISTERS = 0x04
    WRITE_SINGLE_REGISTER = 0x06
    WRITE_MULTIPLE_REGISTERS = 0x10


class ExceptionCode(enum.IntEnum):
    """Exception codes from the Modbus application protocol specification v1.1b3, §7."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    SERVER_DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    SERVER_DEVICE_BUSY = 0x06
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_FAILED_TO_RESPOND = 0x0B


#: The two register tables a read can address: FC03 holding and FC04 input registers.
READ_FUNCTIONS = frozenset({FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS})
