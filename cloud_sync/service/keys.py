"""The cloud service's keys: where they live on disk and how they are created on first start.

One directory (mode 0700) holds every secret the cloud needs, each in its own 0600 file:

``kek-NNNN-XXXXXXXX.key``    key-encryption keys; the newest by name wraps new data keys
``blind-index.key``          HMAC key of the blind indexes (exact-match lookup of sealed values)
``command-signing.key``      Ed25519 key that signs commands to gateways (``.pub`` beside it)
``audit-detail.key``         data key for audit details that belong to no resident
``parcel-code.key``          master parcel-code key; each gateway's pickup-code key is derived
                             from it (HKDF-SHA256 with the gateway id, see docs/parcels.md)

A file that group or others may read is refused rather than used, so a key that leaked through a
careless ``chmod`` or copy is noticed at start-up. No key is ever derived from configuration or
stored in the database: copying the database alone reveals no personal data.
"""

from __future__ import annotations

import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cloud_sync.protocol.pickup_code import derive_site_code_key
from trust import (
    BlindIndexer,
    DataKey,
    KeyFileError,
    Keyring,
    SigningKey,
    VerifyKey,
    load_or_create_secret,
)

__all__ = [
    "AUDIT_KEY_FILE",
    "BLIND_INDEX_FILE",
    "PARCEL_CODE_KEY_FILE",
    "SIGNING_KEY_FILE",
    "CloudKeys",
]

BLIND_INDEX_FILE = "blind-index.key"
SIGNING_KEY_FILE = "command-signing.key"
AUDIT_KEY_FILE = "audit-detail.key"
PARCEL_CODE_KEY_FILE = "parcel-code.key"


@dataclass(frozen=True, slots=True)
class CloudKeys:
    """Every key the cloud service holds, loaded once at start-up."""

    keyring: Keyring
    blind: BlindIndexer
    signing: SigningKey
    audit_key: DataKey
    parcel_code_master: bytes = field(repr=False)
    """The master parcel-code key; use :meth:`gateway_code_key`, never this directly."""

    @classmethod
    def load_or_create(cls, directory: Path) -> CloudKeys:
        """Load the keys in ``directory``, creating the directory and any missing key first."""
        _secure_directory(directory)
        keyring = Keyring.from_directory(directory)
        blind = load_or_create_secret(directory / BLIND_INDEX_FILE, lambda: secrets.token_bytes(32))
        audit = load_or_create_secret(directory / AUDIT_KEY_FILE, lambda: secrets.token_bytes(32))
        parcel_code = load_or_create_secret(
            directory / PARCEL_CODE_KEY_FILE, lambda: secrets.token_bytes(32)
        )
        for name, raw in (
            (BLIND_INDEX_FILE, blind),
            (AUDIT_KEY_FILE, audit),
            (PARCEL_CODE_KEY_FILE, parcel_code),
        ):
            if len(raw) != 32:
                raise KeyFileError(str(directory / name), "this key file holds 32 bytes")
        return cls(
            keyring=keyring,
            blind=BlindIndexer(blind),
            signing=_signing_key(directory / SIGNING_KEY_FILE),
            audit_key=DataKey(audit),
            parcel_code_master=parcel_code,
        )

    def gateway_code_key(self, gateway_id: str) -> bytes:
        """The gateway's 32-byte pickup-code key (written to its key directory at provisioning).

        Raises :class:`ValueError` for a malformed gateway id.
        """
        return derive_site_code_key(self.parcel_code_master, gateway_id)


def _secure_directory(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        # mkdir's mode is filtered by the umask; set it exactly.
        directory.chmod(0o700)
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise KeyFileError(str(directory), "not a directory")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            str(directory), f"mode {stat.S_IMODE(st.st_mode):04o} is too open, want 0700"
        )


def _signing_key(path: Path) -> SigningKey:
    if not path.exists():
        SigningKey.generate().save(path)
    key = SigningKey.load(path)
    pub = path.with_name(path.name + ".pub")
    if not pub.exists():
        # The public half is derived from the private key: recreate it if someone removed it.
        pub.write_text(key.verify_key.to_text() + "\n", "ascii")
    elif VerifyKey.load(pub) != key.verify_key:
        # Gateways are configured from this file: a mismatch means it was replaced.
        raise KeyFileError(str(pub), "does not match the private key beside it")
    # Public, but only this service needs it here; gateways get a copy through provisioning.
    pub.chmod(0o600)
    return key
