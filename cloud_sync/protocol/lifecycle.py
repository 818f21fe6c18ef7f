"""The life of a signed command, as one table. Everything that moves a command's state lives here.

::

    queued ──► sent ──► acknowledged ──┬─► opened               (door.unlock)
      │          │                     ├─► released_not_opened  (door.unlock)
      │          │                     ├─► completed            (meter.read)
      │          │                     └─► failed
      │          ├─► rejected            (the gateway refused it: signature, window, replay…)
      │          ├─► failed              (the device was unreachable, a strike fault…)
      └──────────┴─► expired             (no answer before the command's expiry)

``queued``: the cloud authorised and stored it. ``sent``: published to the gateway's command
topic. ``acknowledged``: the gateway verified it and began the work (for an unlock: the door
controller acknowledged the pulse). ``opened``: the door-position sensor reported the door open
during the pulse. ``released_not_opened``: the pulse ended and nobody opened the door.
``completed``: the command's work is done (a meter read: its reading was recorded before this
report, in outbox order, so it reached the cloud first). Which outcomes an action can end in is
:data:`cloud_sync.protocol.commands.ACTION_SPECS`; the table itself is the same for every action.
Terminal states absorb: a late report for a finished command changes nothing (and is still kept as
an event).
"""

from __future__ import annotations

from enum import StrEnum

from cloud_sync.protocol.errors import IllegalTransition

__all__ = ["TERMINAL", "CommandStatus", "advance", "can_advance"]


class CommandStatus(StrEnum):
    """Every state a signed command can be in."""

    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    OPENED = "opened"
    RELEASED_NOT_OPENED = "released_not_opened"
    COMPLETED = "completed"
    """The command's work is done (a meter read: its reading was recorded before this report)."""
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"


_S = CommandStatus

_TABLE: dict[CommandStatus, frozenset[CommandStatus]] = {
    _S.QUEUED: frozenset({_S.SENT, _S.FAILED, _S.EXPIRED}),
    _S.SENT: frozenset({_S.ACKNOWLEDGED, _S.REJECTED, _S.FAILED, _S.EXPIRED}),
    _S.ACKNOWLEDGED: frozenset({_S.OPENED, _S.RELEASED_NOT_OPENED, _S.COMPLETED, _S.FAILED}),
    _S.OPENED: frozenset(),
    _S.RELEASED_NOT_OPENED: frozenset(),
    _S.COMPLETED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.FAILED: frozenset(),
    _S.EXPIRED: frozenset(),
}

TERMINAL = frozenset(s for s, nxt in _TABLE.items() if not nxt)


def can_advance(state: CommandStatus, to: CommandStatus) -> bool:
    """Whether the table allows ``state`` → ``to``."""
    return to in _TABLE[state]


def advance(state: CommandStatus, to: CommandStatus) -> CommandStatus:
    """The next state, or :class:`IllegalTransition`.

    A report may overtake an intermediate one it implies (a gateway's ``opened`` or ``completed``
    reaching the cloud while it still shows ``sent``); the path through ``acknowledged`` is then
    taken implicitly.
    """
    if to in _TABLE[state]:
        return to
    if state is _S.SENT and to in _TABLE[_S.ACKNOWLEDGED]:
        return to
    raise IllegalTransition(state.value, to.value)
