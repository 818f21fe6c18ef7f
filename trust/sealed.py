"""Sealed fields: envelope encryption of personal data at rest.

* A **key-encryption key** (KEK, AES-256) lives in a 0600 file outside the database. A
  :class:`Keyring` holds the current KEK and any older ones still needed to unwrap.
* Each data subject (a resident) has a random **data key** (DEK), stored only *wrapped* by the
  KEK. Destroying the wrapped DEK erases everything sealed under it (crypto-shredding); rotating
  the KEK re-wraps DEKs and touches no sealed value.
* A value is sealed with AES-256-GCM under its subject's DEK, with associated data naming its
  :class:`Place` (table, column, row). A ciphertext copied to another row or column fails to open.
* A **blind index** (HMAC-SHA256 under a separate key) allows exact-match lookup (a phone number)
  without storing or revealing the value.

Wire form of a sealed value: ``b"\\x01" + nonce(12) + ciphertext_and_tag``.
Wire form of a wrapped key: ``b"\\x01" + len(kid) + kid + nonce(12) + ciphertext_and_tag``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trust.errors import KeyFileError, SealError
from trust.keyfile import load_or_create_secret

__all__ = ["BlindIndexer", "DataKey", "Keyring", "Place", "open_sealed", "seal"]

_VERSION = 1
_NONCE = 12


@dataclass(frozen=True, slots=True)
class Place:
    """Where a sealed value belongs: bound into its associated data."""

    table: str
    column: str
    row: str

    def aad(self) -> bytes:
        """The associated data for this place."""
        for part in (self.table, self.column, self.row):
            if not part or "\x00" in part:
                raise ValueError("place parts must be non-empty and NUL-free")
        return f"courtyard:field\x00{self.table}\x00{self.column}\x00{self.row}".encode()


class DataKey:
    """A subject's 256-bit data key, in memory only while needed."""

    __slots__ = ("_aead", "_raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise ValueError("a data key is 32 bytes")
        self._raw = raw
        self._aead = AESGCM(raw)

    @classmethod
    def generate(cls) -> tuple[DataKey, bytes]:
        """A new data key and its raw bytes (to be wrapped at once, then forgotten)."""
        raw = AESGCM.generate_key(bit_length=256)
        return cls(raw), raw


def seal(key: DataKey, plaintext: str, place: Place) -> bytes:
    """Encrypt ``plaintext`` for ``place`` under ``key``."""
    nonce = os.urandom(_NONCE)
    ct = key._aead.encrypt(nonce, plaintext.encode("utf-8"), place.aad())
    return bytes([_VERSION]) + nonce + ct


def open_sealed(key: DataKey, sealed: bytes, place: Place) -> str:
    """Decrypt a value sealed by :func:`seal` for exactly this ``place``."""
    if len(sealed) < 1 + _NONCE + 16 or sealed[0] != _VERSION:
        raise SealError("not a sealed value")
    try:
        pt = key._aead.decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], place.aad())
    except InvalidTag as exc:
        raise SealError("sealed value does not open here (wrong key, place or tampered)") from exc
    return pt.decode("utf-8")


class Keyring:
    """Key-encryption keys by id: one current (wraps), any number of older ones (unwrap only)."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current KEK must be in the keyring")
        for kid, raw in keys.items():
            if len(raw) != 32 or not kid or len(kid) > 255:
                raise ValueError("KEKs are 32 bytes with a short id")
        self._keys = {kid: AESGCM(raw) for kid, raw in keys.items()}
        self.current = current

    @classmethod
    def from_directory(cls, directory: Path) -> Keyring:
        """Load ``kek-*.key`` files; the newest by name is current. Creates one if there is none."""
        files = sorted(directory.glob("kek-*.key"))
        if not files:
            first = directory / f"kek-0001-{secrets.token_hex(4)}.key"
            load_or_create_secret(first, lambda: secrets.token_bytes(32))
            files = sorted(directory.glob("kek-*.key"))
        keys: dict[str, bytes] = {}
        for f in files:
            raw = load_or_create_secret(f, lambda: b"")
            if len(raw) != 32:
                raise KeyFileError(str(f), "a KEK file holds 32 bytes")
            keys[f.stem.removeprefix("kek-")] = raw
        return cls(keys, files[-1].stem.removeprefix("kek-"))

    def wrap(self, raw_data_key: bytes, subject: str) -> bytes:
        """Wrap a data key for ``subject`` under the current KEK."""
        kid = self.current.encode("ascii")
        nonce = os.urandom(_NONCE)
        ct = self._keys[self.current].encrypt(nonce, raw_data_key, _wrap_aad(subject))
        return bytes([_VERSION, len(kid)]) + kid + nonce + ct

    def unwrap(self, wrapped: bytes, subject: str) -> DataKey:
        """Unwrap a data key wrapped for ``subject`` (by any KEK still in the ring)."""
        if len(wrapped) < 2 or wrapped[0] != _VERSION:
            raise SealError("not a wrapped key")
        n = wrapped[1]
        kid = wrapped[2 : 2 + n].decode("ascii", "replace")
        body = wrapped[2 + n :]
        aead = self._keys.get(kid)
        if aead is None:
            raise SealError(f"KEK {kid!r} is not in the keyring")
        try:
            raw = aead.decrypt(body[:_NONCE], body[_NONCE:], _wrap_aad(subject))
        except InvalidTag as exc:
            raise SealError("wrapped key does not open for this subject") from exc
        return DataKey(raw)

    def wrapped_by(self, wrapped: bytes) -> str:
        """The id of the KEK that wrapped ``wrapped`` (to find keys due for rotation)."""
        return wrapped[2 : 2 + wrapped[1]].decode("ascii", "replace")

    def rewrap(self, wrapped: bytes, subject: str) -> bytes:
        """Re-wrap a data key under the current KEK (rotation touches no sealed value)."""
        return self.wrap(self.unwrap(wrapped, subject)._raw, subject)


def _wrap_aad(subject: str) -> bytes:
    return b"courtyard:dek\x00" + subject.encode("utf-8")


class BlindIndexer:
    """Keyed, deterministic digests for exact-match lookups of sealed values."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a blind-index key has at least 32 bytes")
        self._key = key

    def digest(self, kind: str, normalized_value: str) -> str:
        """The index of ``normalized_value`` among values of ``kind`` (hex, 32 chars)."""
        msg = kind.encode("ascii") + b"\x00" + normalized_value.encode("utf-8")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]
