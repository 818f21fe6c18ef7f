"""Parcel pickup codes, derived the same way by the gateway and the cloud (docs/parcels.md).

::

    site_code_key = HKDF-SHA256(master, salt=none, info="courtyard pickup-code/v1|" + gateway, 32)
    code(n)       = int.from_bytes(HMAC-SHA256(site_code_key, "pickup-code/v1|" + parcel + "|" + n))
                    mod 10**digits, zero-padded to ``digits`` (6..8, default 8)
    index(code)   = hex(HMAC-SHA256(site_code_key, "pickup-index/v1|" + bank + "|" + code))

``n`` (decimal, no leading zeros) is the smallest non-negative integer whose code's index is not
the index of another occupied parcel in the same bank; it travels in ``parcel.deposited`` as
``code_n`` so the cloud can recompute the code for the recipient without storing it. The gateway
stores only the index and finds a typed code by looking its index up, so the lookup compares keyed
hashes, never codes, and a store dump reveals no code.

All of this is pure and sans-I/O; the gateway keeps the key in its key directory (mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Container
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloud_sync.protocol.errors import SyncError
from cloud_sync.protocol.wire import ID_PATTERN

__all__ = [
    "DEFAULT_DIGITS",
    "MAX_CODE_N",
    "MAX_DIGITS",
    "MIN_DIGITS",
    "PickupCodeExhausted",
    "choose_code",
    "code_index",
    "derive_code",
    "derive_site_code_key",
    "is_code_shaped",
]

MIN_DIGITS: Final = 6
MAX_DIGITS: Final = 8
DEFAULT_DIGITS: Final = 8
#: ``n`` ranges over ``0 .. MAX_CODE_N - 1``; :func:`choose_code` gives up after that many tries.
MAX_CODE_N: Final = 1000
KEY_BYTES: Final = 32
#: The master key must carry at least this much entropy.
MIN_MASTER_BYTES: Final = 32

_KEY_INFO = b"courtyard pickup-code/v1|"
_CODE_PREFIX = b"pickup-code/v1|"
_INDEX_PREFIX = b"pickup-index/v1|"
_PARCEL_ID = re.compile(r"[0-9a-f]{32}")
_CODE = re.compile(r"[0-9]{6,8}")


class PickupCodeExhausted(SyncError):
    """No ``n`` below :data:`MAX_CODE_N` gives a free code: the taken set is wrong, not unlucky."""


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"a site code key is {KEY_BYTES} bytes")


def _check_digits(digits: int) -> None:
    if isinstance(digits, bool) or not isinstance(digits, int):
        raise ValueError("digits must be an integer")
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise ValueError(f"digits must be {MIN_DIGITS}..{MAX_DIGITS}")


def _check_id(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{what} must be an identifier of 1-64 [A-Za-z0-9_.:-]")
    return value.encode("ascii")


def derive_site_code_key(master: bytes, gateway_id: str) -> bytes:
    """The gateway's 32-byte code key: HKDF-SHA256 of the cloud's master parcel-code key."""
    if not isinstance(master, bytes) or len(master) < MIN_MASTER_BYTES:
        raise ValueError(f"the master parcel-code key is at least {MIN_MASTER_BYTES} bytes")
    info = _KEY_INFO + _check_id(gateway_id, "gateway id")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(master)


def derive_code(key: bytes, parcel: str, n: int, digits: int = DEFAULT_DIGITS) -> str:
    """The ``n``-th candidate pickup code of ``parcel``: ``digits`` decimal digits."""
    _check_key(key)
    _check_digits(digits)
    if not isinstance(parcel, str) or not _PARCEL_ID.fullmatch(parcel):
        raise ValueError("parcel must be 32 lowercase hex characters")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < MAX_CODE_N:
        raise ValueError(f"n must be an integer in 0..{MAX_CODE_N - 1}")
    msg = _CODE_PREFIX + parcel.encode("ascii") + b"|" + str(n).encode("ascii")
    mac = hmac.digest(key, msg, hashlib.sha256)
    return str(int.from_bytes(mac, "big") % 10**digits).zfill(digits)


def is_code_shaped(code: object, digits: int = DEFAULT_DIGITS) -> bool:
    """Whether ``code`` (say, keypad input) could be a code of ``digits`` digits at all."""
    _check_digits(digits)
    return isinstance(code, str) and len(code) == digits and bool(_CODE.fullmatch(code))


def code_index(key: bytes, bank: str, code: str) -> str:
    """The lookup index of ``code`` in ``bank``: hex HMAC-SHA256, what the gateway stores."""
    _check_key(key)
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise ValueError(f"a code is {MIN_DIGITS}..{MAX_DIGITS} decimal digits")
    msg = _INDEX_PREFIX + _check_id(bank, "bank") + b"|" + code.encode("ascii")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def choose_code(
    key: bytes,
    parcel: str,
    bank: str,
    taken_indexes: Container[str],
    digits: int = DEFAULT_DIGITS,
) -> tuple[int, str, str]:
    """``(n, code, index)`` for the smallest ``n`` whose index is not in ``taken_indexes``.

    ``taken_indexes`` holds the indexes of the other occupied parcels of ``bank``. Raises
    :class:`PickupCodeExhausted` after :data:`MAX_CODE_N` candidates, which with at most 255
    compartments a bank and 10**6 or more codes means the taken set is broken.
    """
    for n in range(MAX_CODE_N):
        code = derive_code(key, parcel, n, digits)
        index = code_index(key, bank, code)
        if index not in taken_indexes:
            return n, code, index
    raise PickupCodeExhausted(f"no free pickup code for parcel {parcel} in bank {bank}")
