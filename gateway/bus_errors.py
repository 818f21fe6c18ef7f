"""The errors of the RS-485 bus layer (all :class:`gateway.errors.GatewayError`).

    GatewayError
    └── BusError                 something on a bus went wrong; ``bus`` names it
        ├── PortError            the port cannot be opened or broke (unplugged adapter, dead server)
        ├── BusClosedError       the owner stopped while an exchange was waiting
        └── ExchangeError        one exchange failed; ``device`` names whom it was for
            ├── NoReplyError     no matching reply before the deadline, after every retry
            ├── ExpiredError     the exchange waited in the queue past its deadline
            └── DeviceReplyError the device answered, but with a refusal (DL/T 645 ERR, Modbus
                                 exception): it is alive, the value is not available
    UnknownDeviceError           a meter, lock board or lock that is not configured

pyserial's ``SerialException`` and ``OSError`` never leave :mod:`gateway.bus_port`; they become
:class:`PortError` there, so callers handle one tree.
"""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = [
    "BusClosedError",
    "BusError",
    "DeviceReplyError",
    "ExchangeError",
    "ExpiredError",
    "NoReplyError",
    "PortError",
    "UnknownDeviceError",
]


class BusError(GatewayError):
    """Base of the bus layer's errors."""

    def __init__(self, bus: str, detail: str) -> None:
        super().__init__(f"bus {bus}: {detail}")
        self.bus = bus
        self.detail = detail


class PortError(BusError):
    """The port could not be opened, or failed while in use."""


class BusClosedError(BusError):
    """The bus owner stopped before the exchange could run."""


class ExchangeError(BusError):
    """One exchange with one device failed."""

    def __init__(self, bus: str, device: str, detail: str) -> None:
        super().__init__(bus, f"{device}: {detail}")
        self.device = device


class NoReplyError(ExchangeError):
    """The device did not answer (in time, or with a valid frame) on any attempt."""


class ExpiredError(ExchangeError):
    """The exchange was still queued when its deadline passed (the bus was down or busy)."""


class DeviceReplyError(ExchangeError):
    """The device answered with a refusal; ``code`` is the protocol's error code."""

    def __init__(self, bus: str, device: str, code: str) -> None:
        super().__init__(bus, device, f"refused: {code}")
        self.code = code


class UnknownDeviceError(GatewayError):
    """A device (or a lock on a board) that this gateway's configuration does not have."""

    def __init__(self, device: str, detail: str = "not configured") -> None:
        super().__init__(f"{device}: {detail}")
        self.device = device
        self.detail = detail
