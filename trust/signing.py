"""Domain-separated Ed25519 signatures.

Every signature covers ``b"courtyard:" + domain + b"\\x00" + message``, so a signature made for one
purpose (a door command, a firmware manifest, a visitor pass) can never be replayed as another.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trust.errors import KeyFileError, SignatureError
from trust.keyfile import load_or_create_secret, read_secret, write_secret

__all__ = ["SigningKey", "VerifyKey", "key_id"]

_PREFIX = b"courtyard:"


def _framed(domain: str, message: bytes) -> bytes:
    d = domain.encode("ascii")
    if not d or b"\x00" in d:
        raise ValueError("domain must be non-empty ASCII without NUL")
    return _PREFIX + d + b"\x00" + message


def key_id(public_raw: bytes) -> str:
    """A short stable identifier of a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """An Ed25519 public key that verifies domain-separated signatures."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")

    @property
    def kid(self) -> str:
        """The key id carried in signed messages."""
        return key_id(self.raw)

    def verify(self, domain: str, message: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` signs ``message`` under ``domain``."""
        if len(signature) != 64:
            raise SignatureError("signature must be 64 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, _framed(domain, message))
        except InvalidSignature as exc:
            raise SignatureError("signature does not verify") from exc

    def to_text(self) -> str:
        """The key as unpadded base64url text, for configuration files."""
        return base64.urlsafe_b64encode(self.raw).rstrip(b"=").decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> VerifyKey:
        """Parse the form written by :meth:`to_text`."""
        s = text.strip()
        return cls(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))

    @classmethod
    def load(cls, path: Path) -> VerifyKey:
        """Load a public key file (base64url text)."""
        try:
            return cls.from_text(path.read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:
            raise KeyFileError(str(path), f"not a public key: {exc}") from exc


class SigningKey:
    """An Ed25519 private key; its bytes never leave this object except to its own key file."""

    __slots__ = ("_key", "verify_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verify_key = VerifyKey(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def kid(self) -> str:
        """The key id of the public half."""
        return self.verify_key.kid

    def sign(self, domain: str, message: bytes) -> bytes:
        """Sign ``message`` for ``domain``."""
        return self._key.sign(_framed(domain, message))

    def _private_raw(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def save(self, path: Path) -> None:
        """Write the private key (mode 0600) and its public key beside it as ``*.pub``."""
        write_secret(path, self._private_raw())
        path.with_name(path.name + ".pub").write_text(self.verify_key.to_text() + "\n", "ascii")

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Load a private key file written by :meth:`save`."""
        raw = read_secret(path)
        if len(raw) != 32:
            raise KeyFileError(str(path), "an Ed25519 private key file holds 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """Load the key at ``path``, generating it (and its ``.pub``) on first use."""
        if not path.exists():
            cls.generate().save(path)
        raw = load_or_create_secret(path, lambda: b"")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))
