"""The security kernel both sides share: key files, signatures, sealed fields, a safe clock."""

from trust.clock import SafeClock
from trust.errors import KeyFileError, SealError, SignatureError, TrustError
from trust.keyfile import load_or_create_secret, read_secret, write_secret
from trust.sealed import BlindIndexer, DataKey, Keyring, Place, open_sealed, seal
from trust.signing import SigningKey, VerifyKey, key_id

__all__ = [
    "BlindIndexer",
    "DataKey",
    "KeyFileError",
    "Keyring",
    "Place",
    "SafeClock",
    "SealError",
    "SignatureError",
    "SigningKey",
    "TrustError",
    "VerifyKey",
    "key_id",
    "load_or_create_secret",
    "open_sealed",
    "read_secret",
    "seal",
    "write_secret",
]
