"""Compact signed tokens for QR codes: the pickup QR and the courier pass.

Text form (ASCII, at most :data:`MAX_TOKEN_CHARS` characters)::

    CY1.<base64url(body)>.<base64url(signature)>

The body is canonical JSON (compact, sorted keys, see :mod:`cloud_sync.protocol.wire`); the
signature is Ed25519 by the cloud's command signing key over the exact body bytes under the domain
``token/v1`` (see :mod:`trust.signing`), never ``cmd/v1``, so a token cannot pass as a command or a
command as a token. Both bodies carry ``"v": 1``::

    {"bank":"A","exp":…,"gw":"gw-1","iat":…,"kid":"<16 hex>","p":"<32 hex>","t":"pickup","v":1}
    {"a":7,"co":"SF Express","exp":…,"gw":"gw-1","iat":…,"kid":"<16 hex>","t":"courier","v":1}

The gateway verifies offline with :func:`verify_token`. Before the signature has been checked the
only thing read from the body is its ``kid`` (through the same strictly bounded JSON parser as
commands); every other field is interpreted only after the signature verifies. Base64 must be
canonical (unpadded, no stray characters, zero trailing bits) and the body must be exactly the
canonical encoding of the fields it holds, so one token has exactly one text. Every refusal is a
:class:`TokenRefused` whose :class:`TokenRefusal` names the check that failed.

Checks here are stateless (size, signature, key, gateway binding, window). That the pickup token's
bank is the bank it is shown to, and that the parcel is still occupied there (which makes it
single-use), is the gateway's locker logic.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Final

from cloud_sync.protocol.commands import CLOCK_SKEW_MS
from cloud_sync.protocol.errors import SyncError, SyncProtocolError
from cloud_sync.protocol.wire import check_id, check_int, decode_object, encode
from trust import SignatureError, SigningKey, VerifyKey

__all__ = [
    "COURIER_MAX_LIFETIME_MS",
    "MAX_TOKEN_CHARS",
    "PICKUP_MAX_LIFETIME_MS",
    "TOKEN_DOMAIN",
    "TOKEN_PREFIX",
    "CourierPass",
    "PickupToken",
    "Token",
    "TokenRefusal",
    "TokenRefused",
    "sign_token",
    "verify_token",
]

# Not secrets: the signature domain and the text prefix (ruff takes "TOKEN" for a password).
TOKEN_DOMAIN: Final = "token/v1"  # noqa: S105
TOKEN_PREFIX: Final = "CY1"  # noqa: S105
#: The whole token text, prefix and dots included; it is also the QR payload.
MAX_TOKEN_CHARS: Final = 512
PICKUP_MAX_LIFETIME_MS: Final = 14 * 24 * 3600 * 1000
COURIER_MAX_LIFETIME_MS: Final = 24 * 3600 * 1000
#: How far the gateway's clock may lag the cloud's (the same allowance as for commands).
TOKEN_CLOCK_SKEW_MS: Final = CLOCK_SKEW_MS
#: Courier company names: at most this many characters (not bytes).
MAX_COMPANY_CHARS: Final = 64
#: Account ids stay within the integers every JSON reader represents exactly.
MAX_ACCOUNT_ID: Final = (1 << 53) - 1

_SIG_B64_CHARS = 86  # 64 bytes, unpadded base64
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_PARCEL_ID = re.compile(r"[0-9a-f]{32}")
_KID = re.compile(r"[0-9a-f]{16}")
_MAX_MS = (1 << 63) - 1


class TokenRefusal(StrEnum):
    """Why a token was refused; the one detail a caller may log or show."""

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_GATEWAY = "wrong_gateway"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    UNSUPPORTED_TYPE = "unsupported_type"


class TokenRefused(SyncError):
    """A token failed verification; the only exception :func:`verify_token` raises."""

    def __init__(self, reason: TokenRefusal) -> None:
        super().__init__(f"token refused: {reason.value}")
        self.reason = reason


def _check_common(gateway: object, issued_at: object, expires_at: object, kid: object) -> None:
    check_id(gateway, "gw")
    check_int(issued_at, "iat", 0, _MAX_MS)
    check_int(expires_at, "exp", 0, _MAX_MS)
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise SyncProtocolError("kid must be 16 lowercase hex characters")


@dataclass(frozen=True, slots=True)
class PickupToken:
    """Lets whoever shows it pick up one parcel at one bank of one gateway (QR at the locker)."""

    parcel: str
    gateway: str
    bank: str
    issued_at: int
    expires_at: int
    kid: str

    TYPE: ClassVar[str] = "pickup"
    MAX_LIFETIME_MS: ClassVar[int] = PICKUP_MAX_LIFETIME_MS

    def __post_init__(self) -> None:
        if not isinstance(self.parcel, str) or not _PARCEL_ID.fullmatch(self.parcel):
            raise SyncProtocolError("parcel must be 32 lowercase hex characters")
        check_id(self.bank, "bank")
        _check_common(self.gateway, self.issued_at, self.expires_at, self.kid)

    def to_obj(self) -> dict[str, Any]:
        """The JSON object form of the body."""
        return {
            "v": 1,
            "t": self.TYPE,
            "p": self.parcel,
            "gw": self.gateway,
            "bank": self.bank,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "kid": self.kid,
        }

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> PickupToken:
        """Validate the JSON object form (type and version already checked)."""
        return cls(
            parcel=obj.get("p"),  # type: ignore[arg-type]  # every field validated in __post_init__
            gateway=obj.get("gw"),  # type: ignore[arg-type]
            bank=obj.get("bank"),  # type: ignore[arg-type]
            issued_at=obj.get("iat"),  # type: ignore[arg-type]
            expires_at=obj.get("exp"),  # type: ignore[arg-type]
            kid=obj.get("kid"),  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class CourierPass:
    """Identifies a courier account at one gateway's locker terminals (deposit, retrieval)."""

    account: int
    company: str
    gateway: str
    issued_at: int
    expires_at: int
    kid: str

    TYPE: ClassVar[str] = "courier"
    MAX_LIFETIME_MS: ClassVar[int] = COURIER_MAX_LIFETIME_MS

    def __post_init__(self) -> None:
        check_int(self.account, "a", 1, MAX_ACCOUNT_ID)
        if (
            not isinstance(self.company, str)
            or not 1 <= len(self.company) <= MAX_COMPANY_CHARS
            or not self.company.isprintable()
        ):
            raise SyncProtocolError(
                f"co must be 1-{MAX_COMPANY_CHARS} printable characters (no control characters)"
            )
        _check_common(self.gateway, self.issued_at, self.expires_at, self.kid)

    def to_obj(self) -> dict[str, Any]:
        """The JSON object form of the body."""
        return {
            "v": 1,
            "t": self.TYPE,
            "a": self.account,
            "co": self.company,
            "gw": self.gateway,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "kid": self.kid,
        }

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> CourierPass:
        """Validate the JSON object form (type and version already checked)."""
        return cls(
            account=obj.get("a"),  # type: ignore[arg-type]  # every field validated in __post_init__
            company=obj.get("co"),  # type: ignore[arg-type]
            gateway=obj.get("gw"),  # type: ignore[arg-type]
            issued_at=obj.get("iat"),  # type: ignore[arg-type]
            expires_at=obj.get("exp"),  # type: ignore[arg-type]
            kid=obj.get("kid"),  # type: ignore[arg-type]
        )


Token = PickupToken | CourierPass
_TYPES: Final[Mapping[str, type[PickupToken] | type[CourierPass]]] = {
    PickupToken.TYPE: PickupToken,
    CourierPass.TYPE: CourierPass,
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64_strict(text: str) -> bytes:
    """Decode unpadded base64url, refusing any text that is not the canonical encoding."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def sign_token(key: SigningKey, body: Token) -> str:
    """The token text of ``body`` signed by ``key`` (whose kid the body must carry).

    Raises :class:`ValueError` if the kid does not name ``key``, the lifetime is not positive or
    longer than the type allows, or the token would exceed :data:`MAX_TOKEN_CHARS` (possible only
    with long identifiers and a company name of many non-ASCII characters).
    """
    if body.kid != key.kid:
        raise ValueError("the body's kid must name the signing key")
    if not 0 < body.expires_at - body.issued_at <= body.MAX_LIFETIME_MS:
        raise ValueError(f"a {body.TYPE} token lives at most {body.MAX_LIFETIME_MS} ms")
    body_bytes = encode(body.to_obj())
    sig = key.sign(TOKEN_DOMAIN, body_bytes)
    text = f"{TOKEN_PREFIX}.{_b64(body_bytes)}.{_b64(sig)}"
    if len(text) > MAX_TOKEN_CHARS:
        raise ValueError(f"the token would be {len(text)} characters, over {MAX_TOKEN_CHARS}")
    return text


def _split(text: str | bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    """Bounds, framing and the kid-bearing JSON parse; raises only ValueError-family errors."""
    if isinstance(text, bytes | bytearray):
        if len(text) > MAX_TOKEN_CHARS:
            raise ValueError("too long")
        text = bytes(text).decode("ascii")
    if not isinstance(text, str):
        raise ValueError("a token is text")
    if len(text) > MAX_TOKEN_CHARS or not text.isascii():
        raise ValueError("a token is at most 512 ASCII characters")
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[2]) != _SIG_B64_CHARS:
        raise ValueError("not a CY1 token")
    body_bytes = _unb64_strict(parts[1])
    sig = _unb64_strict(parts[2])
    return body_bytes, sig, decode_object(body_bytes, MAX_TOKEN_CHARS)


def verify_token(
    text: str | bytes,
    keys: Mapping[str, VerifyKey],
    gateway: str,
    now_ms: int,
) -> Token:
    """Verify-then-parse a token for ``gateway`` at time ``now_ms``.

    Returns the typed body of an authentic, well-formed, in-window token addressed to this gateway;
    raises :class:`TokenRefused` (and nothing else) for any other input, whatever it is.
    """
    try:
        body_bytes, sig, obj = _split(text)
    except (SyncProtocolError, ValueError, binascii.Error) as exc:
        raise TokenRefused(TokenRefusal.MALFORMED) from exc
    kid = obj.get("kid")
    key = keys.get(kid) if isinstance(kid, str) and _KID.fullmatch(kid) else None
    if key is None:
        raise TokenRefused(TokenRefusal.UNKNOWN_KEY)
    try:
        key.verify(TOKEN_DOMAIN, body_bytes, sig)
    except SignatureError as exc:
        raise TokenRefused(TokenRefusal.BAD_SIGNATURE) from exc
    # Authentic from here on: the cloud signed exactly these bytes.
    if obj.get("v") != 1:
        raise TokenRefused(TokenRefusal.MALFORMED)
    kind = obj.get("t")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise TokenRefused(TokenRefusal.UNSUPPORTED_TYPE)
    try:
        token = cls.from_obj(obj)
    except SyncProtocolError as exc:
        raise TokenRefused(TokenRefusal.MALFORMED) from exc
    if encode(token.to_obj()) != body_bytes:  # extra keys, or not the canonical encoding
        raise TokenRefused(TokenRefusal.MALFORMED)
    if token.gateway != gateway:
        raise TokenRefused(TokenRefusal.WRONG_GATEWAY)
    lifetime = token.expires_at - token.issued_at
    if not 0 < lifetime <= token.MAX_LIFETIME_MS:
        raise TokenRefused(TokenRefusal.LIFETIME_TOO_LONG)
    if now_ms >= token.expires_at:
        raise TokenRefused(TokenRefusal.EXPIRED)
    if token.issued_at > now_ms + TOKEN_CLOCK_SKEW_MS:
        raise TokenRefused(TokenRefusal.NOT_YET_VALID)
    return token
