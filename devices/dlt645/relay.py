"""The load relay of a cost-controlled meter, as one table of transitions.

Three things decide whether the premises have power:

* the remote command in force — none, a trip (1AH), or a trip relieved by "allow close" (1BH), which
  waits for the customer to press the meter's button;
* keep-power (保电, 3AH/3BH): while on, the meter closes and refuses every trip, remote or local;
* the meter's own credit control (local prepaid): exhausted credit opens the relay.

So ``closed = keep_power or (remote is NONE and not credit_exhausted)``. Everything that can happen
to the relay — the seven 1CH orders and the button — is a row of `_ORDERS`: a guard that may refuse
it, and the new state. Nothing else in the package changes a `Relay`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from devices.dlt645.frames import RelayAction

__all__ = ["BUTTON", "Relay", "RemoteCommand", "apply"]


class RemoteCommand(enum.Enum):
    """The remote relay command in force."""

    NONE = "none"
    """No trip in force (never tripped, closed by 1CH, or the button after 1BH)."""
    TRIPPED = "tripped"
    """1AH: open until allowed or told to close."""
    CLOSE_ALLOWED = "close_allowed"
    """1BH after a trip: still open, the customer's button closes it."""


@dataclass(frozen=True, slots=True)
class Relay:
    """Everything about the relay that status word 3 and the meter's behaviour depend on."""

    remote: RemoteCommand = RemoteCommand.NONE
    keep_power: bool = False
    alarm: bool = False
    credit_exhausted: bool = False

    @property
    def closed(self) -> bool:
        """The relay is closed: the premises have power."""
        return self.keep_power or (self.remote is RemoteCommand.NONE and not self.credit_exhausted)

    @property
    def commanded_open(self) -> bool:
        """A remote trip is in force (status word 3, bit 6)."""
        return self.remote is RemoteCommand.TRIPPED


BUTTON = "button"
"""The customer pressed the meter's button (closes the relay after "allow close")."""

_Event = RelayAction | str
_Guard = Callable[[Relay], bool]
_Effect = Callable[[Relay], Relay]


def _always(relay: Relay) -> bool:
    return True


def _not_kept(relay: Relay) -> bool:
    return not relay.keep_power


def _allow(relay: Relay) -> Relay:
    if relay.remote is RemoteCommand.TRIPPED:
        return replace(relay, remote=RemoteCommand.CLOSE_ALLOWED)
    return relay


def _button(relay: Relay) -> Relay:
    if relay.remote is RemoteCommand.CLOSE_ALLOWED:
        return replace(relay, remote=RemoteCommand.NONE)
    return relay


_ORDERS: Mapping[_Event, tuple[_Guard, _Effect]] = MappingProxyType(
    {
        RelayAction.TRIP: (_not_kept, lambda r: replace(r, remote=RemoteCommand.TRIPPED)),
        RelayAction.ALLOW_CLOSE: (_always, _allow),
        RelayAction.CLOSE: (_always, lambda r: replace(r, remote=RemoteCommand.NONE)),
        RelayAction.ALARM: (_always, lambda r: replace(r, alarm=True)),
        RelayAction.ALARM_OFF: (_always, lambda r: replace(r, alarm=False)),
        RelayAction.KEEP_POWER: (
            _always,
            lambda r: replace(r, keep_power=True, remote=RemoteCommand.NONE),
        ),
        RelayAction.CANCEL_KEEP_POWER: (_always, lambda r: replace(r, keep_power=False)),
        BUTTON: (_always, _button),
    }
)


def apply(relay: Relay, event: _Event) -> Relay | None:
    """The relay after `event` (a 1CH order or `BUTTON`), or ``None`` if the meter refuses it."""
    guard, effect = _ORDERS[event]
    return effect(relay) if guard(relay) else None
