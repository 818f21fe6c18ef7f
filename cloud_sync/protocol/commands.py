"""Signed commands, cloud to gateway.

Wire form (UTF-8 JSON)::

    {"b": "<body: canonical JSON text>", "s": "<Ed25519 signature, base64url, no padding>"}

The signature covers the exact body text under the domain ``cmd/v1`` (see :mod:`trust.signing`),
so the gateway verifies the bytes it received before it parses them, and no re-encoding can make
a signed body mean something else. The body binds every field a replay or redirect would change::

    {"action":"door.unlock","actor":"resident:7","args":{"pulse_ms":3000},"exp":…,"gw":"gw-1",
     "iat":…,"id":"<32 hex>","kid":"<16 hex>","seq":42,"target":"door:b1-main","v":1}

Checks here are the stateless ones (size, signature, key, gateway binding, action, window). Replay,
sequence and target checks need durable state or the gateway's configuration and live with the
gateway's replay guard.

The actions a command may carry are :data:`ACTION_SPECS`, one :class:`ActionSpec` each: adding an
action to the protocol is one line there (the gateway then needs a handler and its targets, the
cloud a service that creates such commands).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cloud_sync.protocol.errors import CommandRefused, RefusalReason, SyncProtocolError
from cloud_sync.protocol.lifecycle import TERMINAL, CommandStatus
from cloud_sync.protocol.wire import (
    MAX_COMMAND_BYTES,
    check_id,
    check_int,
    check_str,
    decode_object,
    encode,
)
from trust import SignatureError, SigningKey, VerifyKey

__all__ = [
    "ACTIONS",
    "ACTION_SPECS",
    "MAX_ARGS",
    "MAX_LIFETIME_MS",
    "SIGNING_DOMAIN",
    "ActionSpec",
    "CommandBody",
    "check_args",
    "sign_command",
    "verify_command",
]

SIGNING_DOMAIN = "cmd/v1"
MAX_LIFETIME_MS = 60_000
#: How far a gateway's clock may lag the cloud's before a fresh command looks "not yet valid".
CLOCK_SKEW_MS = 5_000
#: At most this many entries in a command's ``args``.
MAX_ARGS = 16
_MAX_ARG_TEXT = 256
_CMD_ID = re.compile(r"[0-9a-f]{32}")
_MAX = (1 << 63) - 1
_S = CommandStatus


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action a signed command may carry: what its target names, how it can succeed."""

    name: str
    """The body's ``action``."""
    target: str
    """What kind of thing the body's ``target`` names at the gateway, by its configured id:
    ``door`` (``doors[].id``), ``meter`` (``meters[].id``), ``locker_bank``
    (``locker_banks[].id``)."""
    outcomes: frozenset[CommandStatus]
    """The terminal statuses that mean the work was done. Every action may also end ``failed``,
    ``rejected`` or ``expired``."""

    def __post_init__(self) -> None:
        check_id(self.name, "action")
        check_id(self.target, "target kind")
        if not self.outcomes or not self.outcomes <= TERMINAL:
            raise ValueError("an action's outcomes are terminal statuses")


#: Every action of this protocol version, by name. One line per action.
ACTION_SPECS: Mapping[str, ActionSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ActionSpec("door.unlock", "door", frozenset({_S.OPENED, _S.RELEASED_NOT_OPENED})),
            ActionSpec("meter.read", "meter", frozenset({_S.COMPLETED})),
            ActionSpec("parcel.deposit", "locker_bank", frozenset({_S.OPENED})),
            ActionSpec("parcel.reopen", "locker_bank", frozenset({_S.OPENED})),
            ActionSpec("parcel.pickup", "locker_bank", frozenset({_S.OPENED})),
            ActionSpec("parcel.retrieve", "locker_bank", frozenset({_S.OPENED})),
            ActionSpec("parcel.cancel", "locker_bank", frozenset({_S.COMPLETED})),
        )
    }
)
ACTIONS = frozenset(ACTION_SPECS)


def check_args(args: Any) -> dict[str, int | str]:
    """``args`` as a command may carry them: at most :data:`MAX_ARGS` entries, identifier names,
    integer or short string values; raises :class:`SyncProtocolError`."""
    if not isinstance(args, Mapping) or len(args) > MAX_ARGS:
        raise SyncProtocolError(f"args must be an object of at most {MAX_ARGS} entries")
    checked: dict[str, int | str] = {}
    for k, v in args.items():
        check_id(k, "arg name")
        checked[k] = (
            check_str(v, "arg", _MAX_ARG_TEXT)
            if isinstance(v, str)
            else (check_int(v, "arg", -_MAX, _MAX))
        )
    return checked


@dataclass(frozen=True, slots=True)
class CommandBody:
    """What a command says; immutable and valid by construction."""

    id: str
    gateway: str
    target: str
    action: str
    seq: int
    issued_at: int
    expires_at: int
    kid: str
    actor: str
    args: Mapping[str, int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _CMD_ID.fullmatch(self.id):
            raise SyncProtocolError("command id must be 32 lowercase hex characters")
        check_id(self.gateway, "gw")
        check_id(self.target, "target")
        check_id(self.action, "action")
        check_id(self.kid, "kid")
        check_id(self.actor, "actor")
        check_int(self.seq, "seq", 1, _MAX)
        check_int(self.issued_at, "iat", 0, _MAX)
        check_int(self.expires_at, "exp", 0, _MAX)
        check_args(self.args)

    def to_obj(self) -> dict[str, Any]:
        """The JSON object form of the body."""
        return {
            "v": 1,
            "id": self.id,
            "gw": self.gateway,
            "target": self.target,
            "action": self.action,
            "args": dict(self.args),
            "seq": self.seq,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "kid": self.kid,
            "actor": self.actor,
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> CommandBody:
        """Validate the JSON object form."""
        if obj.get("v") != 1:
            raise SyncProtocolError("unsupported command version")
        return cls(
            id=obj.get("id"),  # type: ignore[arg-type]  # every field validated in __post_init__
            gateway=obj.get("gw"),  # type: ignore[arg-type]
            target=obj.get("target"),  # type: ignore[arg-type]
            action=obj.get("action"),  # type: ignore[arg-type]
            args=obj.get("args", {}),
            seq=obj.get("seq"),  # type: ignore[arg-type]
            issued_at=obj.get("iat"),  # type: ignore[arg-type]
            expires_at=obj.get("exp"),  # type: ignore[arg-type]
            kid=obj.get("kid"),  # type: ignore[arg-type]
            actor=obj.get("actor"),  # type: ignore[arg-type]
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_command(key: SigningKey, body: CommandBody) -> bytes:
    """The wire bytes of ``body`` signed by ``key`` (whose kid the body must carry)."""
    if body.kid != key.kid:
        raise ValueError("the body's kid must name the signing key")
    if not 0 < body.expires_at - body.issued_at <= MAX_LIFETIME_MS:
        raise ValueError(f"a command lives at most {MAX_LIFETIME_MS} ms")
    text = encode(body.to_obj()).decode("utf-8")
    sig = key.sign(SIGNING_DOMAIN, text.encode("utf-8"))
    return encode({"b": text, "s": _b64(sig)})


def verify_command(
    data: bytes,
    keys: Mapping[str, VerifyKey],
    gateway: str,
    now_ms: int,
) -> CommandBody:
    """Verify-then-parse a signed command for ``gateway`` at time ``now_ms``.

    Raises :class:`CommandRefused` (with the failed check as its reason) for anything but a
    well-formed, authentic, in-window command addressed to this gateway.
    """
    try:
        outer = decode_object(data, MAX_COMMAND_BYTES)
        text, sig_text = outer.get("b"), outer.get("s")
        if not isinstance(text, str) or not isinstance(sig_text, str) or len(sig_text) > 100:
            raise SyncProtocolError("a signed command has string fields b and s")
        sig = _unb64(sig_text)
        body_bytes = text.encode("utf-8")
        inner = decode_object(body_bytes, MAX_COMMAND_BYTES)
        kid = inner.get("kid")
    except (SyncProtocolError, binascii.Error, ValueError) as exc:
        raise CommandRefused(RefusalReason.MALFORMED) from exc
    raw_id = inner.get("id")
    cmd_id = raw_id if isinstance(raw_id, str) and _CMD_ID.fullmatch(raw_id) else None
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise CommandRefused(RefusalReason.UNKNOWN_KEY, cmd_id)
    try:
        key.verify(SIGNING_DOMAIN, body_bytes, sig)
    except SignatureError as exc:
        raise CommandRefused(RefusalReason.BAD_SIGNATURE, cmd_id) from exc
    try:
        body = CommandBody.from_obj(inner)
    except SyncProtocolError as exc:
        raise CommandRefused(RefusalReason.MALFORMED, cmd_id) from exc
    if body.gateway != gateway:
        raise CommandRefused(RefusalReason.WRONG_GATEWAY, body.id)
    if body.action not in ACTIONS:
        raise CommandRefused(RefusalReason.UNSUPPORTED_ACTION, body.id)
    if body.expires_at - body.issued_at > MAX_LIFETIME_MS or body.expires_at <= body.issued_at:
        raise CommandRefused(RefusalReason.LIFETIME_TOO_LONG, body.id)
    if now_ms >= body.expires_at:
        raise CommandRefused(RefusalReason.EXPIRED, body.id)
    if body.issued_at > now_ms + CLOCK_SKEW_MS:
        raise CommandRefused(RefusalReason.NOT_YET_VALID, body.id)
    return body
