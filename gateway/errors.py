"""The exception tree of the gateway.

GatewayError
├── ConfigError         the settings cannot be used (a key file that is missing or not a key)
├── StoreError          the database cannot be used (newer schema, another gateway's file, misuse)
└── UnknownDoorError    a door id that is not in this gateway's configuration

Errors carry what went wrong as attributes; the message is for people. Errors of the libraries
we build on (sqlite3, trust, the door profile) are converted at the boundary with ``raise … from``.
Refusals of signed commands are not gateway errors: they are
:class:`cloud_sync.protocol.CommandRefused`, shared with the cloud, so both sides name the same
reasons.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GatewayError", "StoreError", "UnknownDoorError"]


class GatewayError(Exception):
    """Base of every error raised by :mod:`gateway`."""


class ConfigError(GatewayError):
    """A setting refers to something unusable, e.g. a cloud key file that is not a public key."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class StoreError(GatewayError):
    """The gateway database is unusable or was used wrongly."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnknownDoorError(GatewayError):
    """A door id that this gateway does not have."""

    def __init__(self, door: str) -> None:
        super().__init__(f"unknown door {door!r}")
        self.door = door
