"""DL/T 645-2007 electricity meters: configured values → read requests → ``Decimal`` values.

One 11H read per value (the 2007 standard has block reads, but many meters and the ``dlt645``
peer refuse them, and a single refused block would lose every value in it). Requests go out with
the four ``FE`` wake-up bytes the standard asks masters to send. A reply is accepted only from the
meter's own address, for the identifier asked; an abnormal reply (D1H) from it proves the meter is
there but the value is not, and becomes :class:`~gateway.bus_errors.DeviceReplyError`.

Line: 2400 8E1 by default. The standard's 20 ms ≤ Td ≤ 500 ms is the meter's *response delay*, not
an inter-frame gap, so the bus timeout must exceed 500 ms plus the reply's wire time on real
meters; the gap before each request is two character times (enough for the receiver of the
slowest meter to see the end of the previous frame; the standard sets none).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from devices.dlt645 import (
    Address,
    Decoder,
    Dlt645Error,
    ErrorReply,
    Function,
    ReadAddressReply,
    ReadAddressRequest,
    ReadReply,
    ReadRequest,
    StatusWord3,
    encode,
)
from gateway.bus_errors import DeviceReplyError
from gateway.drivers.base import LineRule, ReadPlan, Request, Values
from gateway.errors import ConfigError
from gateway.settings import MeterSettings

__all__ = [
    "IDENTIFIERS",
    "LINE",
    "PREAMBLE",
    "Dlt645Driver",
    "Dlt645ReplyDecoder",
    "read_address",
]

LINE: Final = LineRule(baud=2400, parity="E", gap_chars=2.0)
PREAMBLE: Final = 4

IDENTIFIERS: Final = {
    "energy_kwh": 0x00010000,  # forward active energy, total
    "voltage_v": 0x02010100,  # phase A
    "current_a": 0x02020100,  # phase A
    "power_kw": 0x02030000,  # active power, total
    "relay": 0x04000503,  # run status word 3: bit 4 is the relay
    "balance_yuan": 0x00900200,  # prepaid remaining money
}
"""Which identifier carries each value name."""


class Dlt645ReplyDecoder:
    """The codec's stream :class:`~devices.dlt645.Decoder` behind the owner's decoder face."""

    def __init__(self) -> None:
        self._decoder = Decoder()

    def feed(self, data: bytes) -> list[object]:
        """Frames completed by ``data`` (garbage skipped and counted)."""
        return list(self._decoder.feed(data))

    def idle(self) -> list[object]:
        """DL/T 645 frames carry their length: a quiet line reveals nothing more."""
        return []

    def reset(self) -> None:
        """Drop a partial frame."""
        self._decoder.reset()

    @property
    def checksum_errors(self) -> int:
        """Checksum failures seen."""
        return self._decoder.framer.checksum_errors

    @property
    def garbage_bytes(self) -> int:
        """Noise bytes dropped (the FE preamble is not noise)."""
        return self._decoder.framer.garbage_bytes


class Dlt645Driver:
    """Reads one DL/T 645-2007 meter's configured values."""

    protocol = "dlt645"

    def __init__(self, settings: MeterSettings) -> None:
        try:
            self.address = Address(settings.address)
        except Dlt645Error as exc:
            raise ConfigError(f"meters.{settings.id}.address", str(exc)) from exc
        if self.address.is_broadcast or "A" in settings.address:
            raise ConfigError(f"meters.{settings.id}.address", "a meter has a 12-digit address")
        unknown = [v for v in settings.values if v not in IDENTIFIERS]
        if unknown:
            raise ConfigError(f"meters.{settings.id}.values", f"DL/T 645 cannot read {unknown}")
        self.device = settings.id
        self.bus = settings.bus
        self._plans = tuple(self._read(name, IDENTIFIERS[name]) for name in settings.values)

    def plan(self) -> tuple[ReadPlan, ...]:
        """One read per configured value."""
        return self._plans

    def _read(self, name: str, di: int) -> ReadPlan:
        address = self.address

        def accept(frame: object) -> bool:
            if isinstance(frame, ReadReply):
                return frame.address == address and frame.di == di
            return (
                isinstance(frame, ErrorReply)
                and frame.address == address
                and frame.function == Function.READ
            )

        def values(frame: object) -> Values:
            if isinstance(frame, ErrorReply):
                raise DeviceReplyError(self.bus, self.device, f"ERR {int(frame.errors):02X}H")
            assert isinstance(frame, ReadReply)
            try:
                value = frame.value
            except Dlt645Error as exc:
                raise DeviceReplyError(self.bus, self.device, f"bad value: {exc}") from exc
            if isinstance(value, StatusWord3):
                return {name: "open" if value.relay_open else "closed"}
            if not isinstance(value, Decimal):
                raise DeviceReplyError(self.bus, self.device, f"{name} is not a number")
            return {name: value}

        data = encode(ReadRequest(address, di), preamble=PREAMBLE)
        return ReadPlan(Request(data, Dlt645ReplyDecoder, accept), values)


def read_address() -> Request:
    """13H to the wildcard address: the address of the one meter on a line (commissioning).

    Only meaningful with a single meter on the line; with several, every one answers and the
    replies collide.
    """
    return Request(
        encode(ReadAddressRequest(), preamble=PREAMBLE),
        Dlt645ReplyDecoder,
        lambda frame: isinstance(frame, ReadAddressReply),
    )
