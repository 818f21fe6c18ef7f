"""The exception tree of the gateway⇄cloud protocol.

SyncError
├── SyncProtocolError     the peer sent bytes that are not a valid message (its fault)
├── CommandRefused        a signed command failed verification; ``.reason`` says which check
├── IllegalTransition     a command lifecycle step the table does not allow (our fault)
└── LinkError             the MQTT link failed (not connected, publish not acknowledged)
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CommandRefused",
    "IllegalTransition",
    "LinkError",
    "RefusalReason",
    "SyncError",
    "SyncProtocolError",
]


class SyncError(Exception):
    """Base of every error raised by :mod:`cloud_sync.protocol`."""


class SyncProtocolError(SyncError):
    """A message from the other side is malformed, oversized or of the wrong shape."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RefusalReason(StrEnum):
    """Why a gateway refused a signed command (reported to the cloud as the command's detail)."""

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_GATEWAY = "wrong_gateway"
    UNKNOWN_TARGET = "unknown_target"
    UNSUPPORTED_ACTION = "unsupported_action"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    REPLAYED = "replayed"
    OUT_OF_SEQUENCE = "out_of_sequence"


class CommandRefused(SyncError):
    """A signed command failed one of the gateway's checks."""

    def __init__(self, reason: RefusalReason, command_id: str | None = None) -> None:
        super().__init__(f"command {command_id or '?'} refused: {reason.value}")
        self.reason = reason
        self.command_id = command_id


class IllegalTransition(SyncError):
    """A lifecycle transition that the table forbids."""

    def __init__(self, state: str, to: str) -> None:
        super().__init__(f"illegal command transition {state} -> {to}")
        self.state = state
        self.to = to


class LinkError(SyncError):
    """The MQTT link could not do what was asked."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
