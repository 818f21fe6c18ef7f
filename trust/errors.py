"""The exception tree of the security kernel.

TrustError
├── KeyFileError        a key file is missing, malformed or has unsafe permissions
├── SignatureError      a signature does not verify under the given domain and key
└── SealError           a sealed value cannot be opened (wrong key, wrong place, tampered)
"""

from __future__ import annotations

__all__ = ["KeyFileError", "SealError", "SignatureError", "TrustError"]


class TrustError(Exception):
    """Base of every error raised by :mod:`trust`."""


class KeyFileError(TrustError):
    """A key file is missing, malformed, or readable by others."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SignatureError(TrustError):
    """A signature failed to verify."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SealError(TrustError):
    """A sealed field could not be opened."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
