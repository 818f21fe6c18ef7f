"""A parcel's pickup code and pickup QR token, made on demand for its recipient (docs/parcels.md).

The cloud stores nothing of a pickup code. The gateway picks the code as the ``n``-th candidate
of :func:`~cloud_sync.protocol.pickup_code.derive_code` under its site code key and reports
``n`` as ``code_n`` in ``parcel.deposited``; the cloud derives the same site code key from its
master key (:meth:`CloudKeys.gateway_code_key`) and recomputes the code from the parcel id and
``code_n`` only to show it to the parcel's recipient. The result must never be written to the
database, a log, an audit detail or a notification body.

The pickup QR is a :class:`~cloud_sync.protocol.tokens.PickupToken` signed by the command signing
key under the token domain; the gateway verifies it offline.

Whether the caller may see the code (the recipient of a parcel that is still waiting) is the
caller's decision; these functions only compute.
"""

from __future__ import annotations

from typing import Final, Protocol

from cloud_sync.protocol.errors import SyncProtocolError
from cloud_sync.protocol.pickup_code import DEFAULT_DIGITS, derive_code
from cloud_sync.protocol.tokens import PICKUP_MAX_LIFETIME_MS, PickupToken, sign_token
from cloud_sync.service.keys import CloudKeys

__all__ = [
    "DEFAULT_PICKUP_TOKEN_LIFETIME_MS",
    "NoPickupCode",
    "ParcelCodeSource",
    "pickup_code",
    "pickup_token",
]

#: A pickup QR lives as long as the token rules allow (14 days) unless the caller asks for less.
DEFAULT_PICKUP_TOKEN_LIFETIME_MS: Final = PICKUP_MAX_LIFETIME_MS


class ParcelCodeSource(Protocol):
    """What a pickup code is computed from: a :class:`~cloud_sync.service.tables.Parcel` row."""

    @property
    def id(self) -> str:
        """The parcel id (32 lowercase hex)."""
        ...

    @property
    def gateway_id(self) -> str:
        """The gateway whose locker holds it (its code key is derived from this id)."""
        ...

    @property
    def code_n(self) -> int | None:
        """Which candidate code the gateway chose; None until ``parcel.deposited`` arrived."""
        ...


class NoPickupCode(ValueError):
    """The parcel has no pickup code (yet): it was not reported deposited."""


def pickup_code(keys: CloudKeys, parcel: ParcelCodeSource, digits: int = DEFAULT_DIGITS) -> str:
    """The parcel's pickup code, exactly as its gateway computed it.

    ``digits`` must be the gateway's ``parcels.code_digits`` (6..8, default 8). Raises
    :class:`NoPickupCode` when ``code_n`` is None, :class:`ValueError` for a malformed parcel or
    gateway id. Show the result to the recipient; never store or log it.
    """
    if parcel.code_n is None:
        raise NoPickupCode(f"parcel {parcel.id} has no pickup code")
    return derive_code(keys.gateway_code_key(parcel.gateway_id), parcel.id, parcel.code_n, digits)


def pickup_token(
    keys: CloudKeys,
    parcel: ParcelCodeSource,
    bank_local_id: str,
    now_ms: int,
    lifetime_ms: int = DEFAULT_PICKUP_TOKEN_LIFETIME_MS,
) -> str:
    """A signed pickup QR token for ``parcel`` at bank ``bank_local_id`` of its gateway.

    Valid from ``now_ms`` for ``lifetime_ms``, capped at the pickup token's maximum (14 days).
    Raises :class:`ValueError` for a lifetime that is not positive or a malformed id.
    """
    if isinstance(lifetime_ms, bool) or not isinstance(lifetime_ms, int) or lifetime_ms <= 0:
        raise ValueError("a pickup token's lifetime is a positive number of ms")
    try:
        body = PickupToken(
            parcel=parcel.id,
            gateway=parcel.gateway_id,
            bank=bank_local_id,
            issued_at=now_ms,
            expires_at=now_ms + min(lifetime_ms, PICKUP_MAX_LIFETIME_MS),
            kid=keys.signing.kid,
        )
    except SyncProtocolError as exc:
        raise ValueError(str(exc)) from None
    return sign_token(keys.signing, body)
