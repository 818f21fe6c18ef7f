"""Telling residents that something happened: one :class:`Note`, several channels.

A :class:`Note` is addressed to one resident of one site and has a ``kind`` (``parcel.waiting``)
and a small flat ``body`` of strings and integers that the resident's app renders. A channel
delivers it:

* :class:`InAppChannel` inserts a :class:`~cloud_sync.service.tables.Notification` row on the
  caller's connection, so the note commits (or rolls back) with the change it reports — the inbox
  uses it inside the batch's transaction;
* :class:`SmsChannel` formats a short text and hands it to an :class:`SmsProvider` (no real
  provider is wired in yet). The phone number is opened from the resident's sealed record
  (:func:`cloud_sync.service.directory.read_profile`) only for the moment of sending.

**A body never contains a pickup code** (nor any other secret, nor a name or phone number): it is
stored as it is. Only an SMS *text* may carry the code, recomputed at sending time from the
parcel's ``code_n`` (:func:`cloud_sync.service.parcel_codes.pickup_code`); the text is handed to
the provider and not kept. :func:`check_body` refuses a body with a key that names a code or
token, as a guard against a careless caller.

An SMS goes out over the network and cannot be taken back: send it after the transaction that
decided it has committed, never from inside the inbox's batch transaction. :class:`Notifier`
fans one note out to every channel it was configured with, in order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import structlog
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_sync.service import directory
from cloud_sync.service.db import Connection, Session, run
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.parcel_codes import pickup_code
from cloud_sync.service.state import Clock
from cloud_sync.service.tables import Membership, Notification, Parcel, Resident

__all__ = [
    "FORBIDDEN_BODY_KEYS",
    "MAX_BODY_KEYS",
    "MAX_BODY_TEXT",
    "PARCEL_WAITING",
    "InAppChannel",
    "Note",
    "NotificationChannel",
    "Notifier",
    "SmsChannel",
    "SmsProvider",
    "check_body",
    "current_residents",
]

log = structlog.get_logger(__name__)

#: The kind of the note that a parcel is waiting in a locker: body ``{parcel, bank, compartment}``.
PARCEL_WAITING: Final = "parcel.waiting"
#: A body has at most this many keys, each value a string of at most ``MAX_BODY_TEXT`` characters
#: or an integer (or None).
MAX_BODY_KEYS: Final = 16
MAX_BODY_TEXT: Final = 200
#: Keys a body may never have: a code or a token does not belong in a stored message.
FORBIDDEN_BODY_KEYS: Final = frozenset(
    {"code", "pickup_code", "code_n", "token", "qr", "qr_token", "password", "phone", "name"}
)

_KIND = re.compile(r"[a-z][a-z0-9_.]{0,31}")
_BODY_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_NOTES: Table = Notification.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_MEMBERSHIPS: Table = Membership.__table__  # type: ignore[attr-defined]
_RESIDENTS: Table = Resident.__table__  # type: ignore[attr-defined]
_PARCELS: Table = Parcel.__table__  # type: ignore[attr-defined]


def check_body(body: Mapping[str, str | int | None]) -> dict[str, str | int | None]:
    """A copy of ``body`` if it is a small flat map fit to be stored; ValueError otherwise."""
    if len(body) > MAX_BODY_KEYS:
        raise ValueError(f"a notification body has at most {MAX_BODY_KEYS} keys")
    out: dict[str, str | int | None] = {}
    for key, value in body.items():
        if not isinstance(key, str) or not _BODY_KEY.fullmatch(key):
            raise ValueError("a notification body key is a short lowercase identifier")
        if key in FORBIDDEN_BODY_KEYS:
            raise ValueError(f"a notification body may not carry {key!r}")
        if isinstance(value, str):
            if len(value) > MAX_BODY_TEXT:
                raise ValueError(f"a notification body value has at most {MAX_BODY_TEXT} chars")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError("a notification body value is a string, an integer or None")
        out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class Note:
    """One message for one resident; ``body`` never holds a code (see the module docstring)."""

    site_id: int
    resident_id: int
    kind: str
    body: Mapping[str, str | int | None]

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise ValueError("a notification kind is a short lowercase dotted identifier")
        check_body(self.body)


class NotificationChannel(Protocol):
    """A way of reaching a resident."""

    async def send(self, conn: Connection, note: Note) -> None:
        """Deliver ``note``; ``conn`` is the caller's connection (or session) for any lookup."""
        ...


class InAppChannel:
    """The resident's in-app inbox: a ``notifications`` row, in the caller's transaction."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock

    def _now(self) -> int:
        return self._clock.now_ms() if self._clock is not None else time.time_ns() // 1_000_000

    async def send(self, conn: Connection, note: Note) -> None:
        """Insert the note (not committed: the caller's transaction decides)."""
        await run(
            conn,
            insert(_NOTES).values(
                site_id=note.site_id,
                resident_id=note.resident_id,
                kind=note.kind,
                body=check_body(note.body),
                created_at=self._now(),
                read_at=None,
            ),
        )


class SmsProvider(Protocol):
    """Whatever sends a text message (an SMS gateway's API); none is wired in yet."""

    async def send(self, phone: str, text: str) -> None:
        """Send ``text`` to ``phone`` (normalised digits); raise if it could not be handed over."""
        ...


class SmsChannel:
    """A short text to the resident's phone, from the sealed directory, through ``provider``.

    For ``parcel.waiting`` the text names the bank and compartment and, with ``include_code``,
    the pickup code, recomputed now for a parcel still waiting (``digits`` must be the gateway's
    ``parcels.code_digits``). The text is passed to the provider and kept nowhere. An erased
    resident (no phone any more) is skipped. Not transactional: use it after commit.
    """

    def __init__(
        self,
        provider: SmsProvider,
        keys: CloudKeys,
        *,
        include_code: bool = True,
        digits: int = 8,
        sender: str = "Courtyard",
    ) -> None:
        self._provider = provider
        self._keys = keys
        self._include_code = include_code
        self._digits = digits
        self._sender = sender

    async def send(self, conn: Connection, note: Note) -> None:
        """Look up the phone and the text, then hand them to the provider."""
        if isinstance(conn, AsyncConnection):
            async with Session(bind=conn) as session:
                phone, text = await self._prepare(session, note)
        else:
            phone, text = await self._prepare(conn, note)
        if phone is None:
            log.info("no phone for an sms", resident=note.resident_id, kind=note.kind)
            return
        await self._provider.send(phone, text)

    async def _prepare(self, session: Any, note: Note) -> tuple[str | None, str]:
        profile = await directory.read_profile(session, self._keys, note.resident_id)
        if profile is None:
            return None, ""
        return profile.phone, await self._text(session, note)

    async def _text(self, session: Any, note: Note) -> str:
        body = note.body
        if note.kind != PARCEL_WAITING:
            return f"{self._sender}: you have a new message ({note.kind})."
        text = (
            f"{self._sender}: a parcel is waiting for you at {body.get('bank')}, "
            f"compartment {body.get('compartment')}."
        )
        parcel_id = body.get("parcel")
        if self._include_code and isinstance(parcel_id, str):
            parcel = (
                await run(
                    session,
                    select(_PARCELS.c.id, _PARCELS.c.gateway_id, _PARCELS.c.code_n).where(
                        _PARCELS.c.id == parcel_id,
                        _PARCELS.c.site_id == note.site_id,
                        _PARCELS.c.state == "waiting",
                    ),
                )
            ).one_or_none()
            if parcel is not None and parcel.code_n is not None:
                text += f" Pickup code: {pickup_code(self._keys, parcel, self._digits)}."
        return text


class Notifier:
    """Sends each note through every configured channel, in order."""

    def __init__(self, channels: Sequence[NotificationChannel]) -> None:
        self.channels: tuple[NotificationChannel, ...] = tuple(channels)

    async def notify(self, conn: Connection, note: Note) -> None:
        """Deliver ``note`` on every channel (an exception from a channel propagates)."""
        for channel in self.channels:
            await channel.send(conn, note)

    async def notify_all(self, conn: Connection, notes: Sequence[Note]) -> None:
        """Deliver several notes."""
        for note in notes:
            await self.notify(conn, note)


async def current_residents(conn: Connection, unit_id: int, now_ms: int) -> list[int]:
    """The (not erased) residents whose membership of ``unit_id`` is valid at ``now_ms``."""
    m, r = _MEMBERSHIPS.c, _RESIDENTS.c
    rows = await run(
        conn,
        select(m.resident_id)
        .join(_RESIDENTS, r.id == m.resident_id)
        .where(
            m.unit_id == unit_id,
            m.valid_from <= now_ms,
            m.valid_until.is_(None) | (m.valid_until > now_ms),
            r.erased_at.is_(None),
        )
        .order_by(m.resident_id),
    )
    return [int(rid) for rid in rows.scalars()]
