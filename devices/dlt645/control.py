"""The control byte C: direction, abnormal, follow-up and function bits, and the codes we model.

    D7  direction   0 = master → meter, 1 = meter → master
    D6  abnormal    1 = error reply (one ERR byte follows)
    D5  follow-up   1 = more frames follow (B1H, B2H)
    D4..D0 function 11H read, 12H read follow-up, 13H read address, 14H write, 08H time sync,
                    1CH relay control; 01H, 02H, 04H are the 1997 read, follow-up and write

So a normal reply is ``C | 80H`` and an error reply ``C | C0H``.
"""

from __future__ import annotations

import enum

__all__ = [
    "ABNORMAL",
    "FOLLOWS",
    "MODELLED_CONTROLS",
    "REPLY",
    "Function",
    "function_of",
    "is_modelled_control",
]

REPLY = 0x80
"""D7: the frame travels from the meter to the master."""
ABNORMAL = 0x40
"""D6: an error reply."""
FOLLOWS = 0x20
"""D5: follow-up frames exist."""
_FUNCTION_MASK = 0x1F


class Function(enum.IntEnum):
    """The function codes (D4..D0) with a typed frame."""

    READ_1997 = 0x01
    FOLLOW_UP_1997 = 0x02
    WRITE_1997 = 0x04
    TIME_SYNC = 0x08
    READ = 0x11
    FOLLOW_UP = 0x12
    READ_ADDRESS = 0x13
    WRITE = 0x14
    RELAY = 0x1C


def function_of(control: int) -> int:
    """The function code D4..D0 of a control byte."""
    return control & _FUNCTION_MASK


MODELLED_CONTROLS = frozenset(
    {
        Function.TIME_SYNC,
        Function.READ,
        Function.READ | REPLY,
        Function.READ | REPLY | FOLLOWS,
        Function.FOLLOW_UP,
        Function.FOLLOW_UP | REPLY,
        Function.FOLLOW_UP | REPLY | FOLLOWS,
        Function.READ_ADDRESS,
        Function.READ_ADDRESS | REPLY,
        Function.WRITE,
        Function.WRITE | REPLY,
        Function.RELAY,
        Function.RELAY | REPLY,
        Function.READ_1997,
        Function.READ_1997 | REPLY,
        Function.READ_1997 | REPLY | FOLLOWS,
        Function.FOLLOW_UP_1997,
        Function.FOLLOW_UP_1997 | REPLY,
        Function.FOLLOW_UP_1997 | REPLY | FOLLOWS,
        Function.WRITE_1997,
        Function.WRITE_1997 | REPLY,
    }
    | {REPLY | ABNORMAL | function for function in range(_FUNCTION_MASK + 1)}
)
"""Every control byte that decodes to a typed frame rather than a `RawFrame`.

Error replies (``C0H | function``) are modelled for every function, also those without a typed
request: a meter's refusal of a freeze is as useful to a master as its refusal of a read.
"""


def is_modelled_control(control: int) -> bool:
    """Whether `control` decodes to a typed frame rather than a `RawFrame`."""
    return control in MODELLED_CONTROLS
