"""What the simulated door controller and the people around it do when a pulse arrives."""

from __future__ import annotations

import enum

__all__ = ["Behaviour"]


class Behaviour(enum.StrEnum):
    """A simulated controller's behaviour; switchable at run time.

    The values are the names a command line or configuration file would use.
    """

    WALK_THROUGH = "walk_through"
    """Pulse accepted, strike released, someone opens the door, walks through and closes it."""

    NOBODY_OPENS = "nobody_opens"
    """Pulse accepted and the strike released, but nobody opens the door."""

    STRIKE_FAILS = "strike_fails"
    """Pulse refused with ``strike_fault``: the strike never moves."""

    OFFLINE = "offline"
    """The controller drops off the broker without saying goodbye, so its last will fires."""
