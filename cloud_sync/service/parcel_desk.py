"""The parcel desk: recipients, and the parcel commands the cloud sends (docs/parcels.md).

The route guard has already asked the policy whether the caller may do this to this bank or
parcel; a refusal ends the request there with 404 and nothing is stored or published. Here, as
for a remote unlock (:mod:`cloud_sync.service.unlock`), everything a request changes is written
in the one transaction in which the :class:`~cloud_sync.service.dispatch.Dispatcher` numbers the
command, which then signs and publishes it:

* ``deposit`` (courier): the :class:`~cloud_sync.service.tables.Parcel` row (state
  ``requested``, a fresh id of 32 hex), the ``parcel.deposit`` command (target the bank's local
  id, args ``parcel``, ``size``, ``unit`` (label), ``courier`` (account id), ``company``) and its
  audit record;
* ``reopen``/``cancel`` (the depositing courier, while the deposit is unfinished: ``requested``
  or ``empty``), ``retrieve`` (the depositing courier, ``waiting``; whether the retention has
  passed is the gateway's to say) and ``pickup`` (a resident of the unit, ``waiting``): the
  command with ``parcel_id`` set, and its audit record. A request for a parcel in another state
  is refused with 409 ``wrong_state`` before anything is stored.

The gateway owns the lockers and has the last word on every one of these (it refuses with a
reason in the command's status); the parcel's state moves only with the gateway's events
(:mod:`cloud_sync.service.inbox`).

``Idempotency-Key``: the same key from the same account returns the command (and parcel) it
created the first time; the key reused for another action, bank or parcel is 409
``idempotency_conflict``.

Recipients are found by unit label within the bank's site, or by phone number through the blind
index (:func:`cloud_sync.service.directory.find_by_phone`) → a resident → a membership valid now →
its unit. A courier is shown the unit's label and a masked phone number (``138****8000``), never a
name.

Revealing a pickup code (or its QR) and remote pickups are rate limited per account
(:class:`ParcelLimits`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.protocol import CommandStatus
from cloud_sync.protocol.parcel_fees import FeeRule, fee_cents
from cloud_sync.service import audit, directory
from cloud_sync.service.db import Database, run
from cloud_sync.service.dispatch import Dispatcher
from cloud_sync.service.errors import Conflict, RateLimited
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.policy import Principal
from cloud_sync.service.ratelimit import SlidingWindow
from cloud_sync.service.tables import Command, Membership, Parcel, Resident, Unit

__all__ = [
    "CANCEL",
    "DEPOSIT",
    "PICKUP",
    "REOPEN",
    "RETRIEVE",
    "STATES_FOR",
    "Issued",
    "ParcelDesk",
    "ParcelLimits",
    "Recipient",
    "TooManyRequests",
    "estimated_fee",
    "find_recipient",
]

DEPOSIT: Final = "parcel.deposit"
REOPEN: Final = "parcel.reopen"
CANCEL: Final = "parcel.cancel"
RETRIEVE: Final = "parcel.retrieve"
PICKUP: Final = "parcel.pickup"

#: The parcel states (as the cloud knows them) in which each parcel command may be sent.
STATES_FOR: Final[Mapping[str, frozenset[str]]] = {
    # The deposit is unfinished: the door is open for the courier, or it closed on nothing.
    REOPEN: frozenset({"requested", "empty"}),
    CANCEL: frozenset({"requested", "empty"}),
    RETRIEVE: frozenset({"waiting"}),
    PICKUP: frozenset({"waiting"}),
}
#: The fee rule the cloud estimates with: the contract's defaults. The gateway's own rule (its
#: ``[parcels]`` section) fixes the fee it records, which is authoritative.
DEFAULT_FEE_RULE: Final = FeeRule()

_COMMANDS: Table = Command.__table__  # type: ignore[attr-defined]  # SQLModel leaves it untyped
_PARCELS: Table = Parcel.__table__  # type: ignore[attr-defined]
_UNITS: Table = Unit.__table__  # type: ignore[attr-defined]
_MEMBERSHIPS: Table = Membership.__table__  # type: ignore[attr-defined]
_RESIDENTS: Table = Resident.__table__  # type: ignore[attr-defined]
_INSERT_COMMAND = _COMMANDS.insert()
_INSERT_PARCEL = _PARCELS.insert()


# -- rate limits ------------------------------------------------------------------------------


class TooManyRequests(RateLimited):
    """429 ``rate_limited``: this account asked too often; see ``Retry-After``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.message = "too many requests; try again later"


class ParcelLimits:
    """Per-account sliding windows: code (and QR) reveals, and remote pickups.

    Every request counts, successful or not: showing a code is what is being limited. Like the
    login limiter (:mod:`cloud_sync.service.ratelimit`) the windows live in this process.
    """

    def __init__(
        self,
        *,
        reveals: int = 10,
        pickups: int = 10,
        window_s: float = 600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reveals = SlidingWindow(reveals, window_s, clock=clock)
        self.pickups = SlidingWindow(pickups, window_s, clock=clock)

    @staticmethod
    def _take(window: SlidingWindow, account_id: int) -> None:
        key = str(account_id)
        wait = window.retry_after(key)
        if wait is not None:
            raise TooManyRequests(wait)
        window.record_failure(key)  # "failure" here: one more request in the window

    def reveal(self, account_id: int) -> None:
        """Count one code or QR reveal; TooManyRequests past the limit."""
        self._take(self.reveals, account_id)

    def pickup(self, account_id: int) -> None:
        """Count one remote pickup; TooManyRequests past the limit."""
        self._take(self.pickups, account_id)


# -- recipients -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """A parcel's recipient as a courier may see it: a unit, and a masked phone number."""

    unit_id: int
    unit_label: str
    phone_masked: str | None


async def find_recipient(
    session: AsyncSession,
    keys: CloudKeys,
    site_id: int,
    now_ms: int,
    *,
    unit: str | None = None,
    phone: str | None = None,
) -> Recipient | None:
    """The recipient named by a unit label or a phone number at ``site_id``; None if unknown.

    By phone: the site's residents with that number (blind index), each one's memberships valid
    at ``now_ms``, the first unit by label. By unit: the unit with that label, shown with the
    masked phone of its first current member (by membership), or None when nobody lives there.
    Raises :class:`~cloud_sync.service.directory.InvalidPhone` for a malformed number.
    """
    u, m, r = _UNITS.c, _MEMBERSHIPS.c, _RESIDENTS.c
    current = (m.valid_from <= now_ms) & (m.valid_until.is_(None) | (m.valid_until > now_ms))
    if phone is not None:
        normalized = directory.normalize_phone(phone)
        index = keys.blind.digest("phone", normalized)
        row = (
            await run(
                session,
                select(u.id, u.label)
                .select_from(
                    _UNITS.join(_MEMBERSHIPS, m.unit_id == u.id).join(
                        _RESIDENTS, r.id == m.resident_id
                    )
                )
                .where(
                    r.site_id == site_id,
                    r.phone_index == index,
                    r.erased_at.is_(None),
                    u.site_id == site_id,
                    current,
                )
                .order_by(u.label, u.id)
                .limit(1),
            )
        ).one_or_none()
        if row is None:
            return None
        return Recipient(row.id, row.label, directory.mask_phone(normalized))
    if unit is None:
        raise ValueError("a recipient is named by a unit or a phone number")
    found = (
        await run(
            session, select(u.id, u.label).where(u.site_id == site_id, u.label == unit.strip())
        )
    ).one_or_none()
    if found is None:
        return None
    first = (
        await run(
            session,
            select(m.resident_id)
            .select_from(_MEMBERSHIPS.join(_RESIDENTS, r.id == m.resident_id))
            .where(m.unit_id == found.id, r.erased_at.is_(None), current)
            .order_by(m.id)
            .limit(1),
        )
    ).scalar_one_or_none()
    masked = None
    if first is not None:
        profile = await directory.read_profile(session, keys, int(first))
        masked = directory.mask_phone(profile.phone) if profile is not None else None
    return Recipient(found.id, found.label, masked)


def estimated_fee(deposited_at: int | None, now_ms: int, rule: FeeRule = DEFAULT_FEE_RULE) -> int:
    """The fee, in cents, a parcel deposited at ``deposited_at`` would cost if claimed now."""
    if deposited_at is None:
        return 0
    return fee_cents(max(0, now_ms - deposited_at), rule)


# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    """A parcel command: the command row, its status, its parcel, and whether it is new."""

    command: Command
    status: CommandStatus
    parcel_id: str
    new: bool


@dataclass(frozen=True, slots=True)
class ParcelDesk:
    """Creates parcel commands (and, for a deposit, the parcel)."""

    db: Database
    command_ttl_ms: int

    async def deposit(
        self,
        dispatcher: Dispatcher,
        principal: Principal,
        bank: Any,
        recipient: Recipient,
        *,
        size: str,
        tracking: str | None,
        now_ms: int,
        idempotency_key: str | None,
    ) -> Issued:
        """Create the parcel and its ``parcel.deposit`` command; number, audit and publish it.

        ``bank`` is a locker bank row (``id``, ``site_id``, ``gateway_id``, ``local_id``).
        """
        if idempotency_key is not None:
            earlier = await self._by_key(principal.account_id, idempotency_key)
            if earlier is not None:
                return self._same(earlier, DEPOSIT, bank=bank)
        parcel_id = uuid.uuid4().hex
        command = self._command(principal, bank, DEPOSIT, parcel_id, now_ms, idempotency_key)
        args: dict[str, int | str] = {
            "parcel": parcel_id,
            "size": size,
            "unit": recipient.unit_label,
            "courier": principal.account_id,
        }
        if principal.company:
            args["company"] = principal.company
        parcel = {
            "id": parcel_id,
            "site_id": bank.site_id,
            "gateway_id": bank.gateway_id,
            "bank_id": bank.id,
            "compartment": None,
            "size": size,
            "unit_id": recipient.unit_id,
            "unit_label": recipient.unit_label,
            "courier_account_id": principal.account_id,
            "company": principal.company,
            "tracking": tracking,
            "state": "requested",
            "reason": None,
            "code_n": None,
            "via": "command",
            "fee_cents": None,
            "fee_state": None,
            "created_at": now_ms,
            "deposited_at": None,
            "picked_up_at": None,
            "updated_at": now_ms,
        }
        detail = {
            "command": command.id,
            "parcel": parcel_id,
            "bank": bank.id,
            "size": size,
            "unit_id": recipient.unit_id,
        }

        async def record(conn: AsyncConnection) -> None:
            await conn.execute(_INSERT_PARCEL, parcel)
            await self._record(conn, command, principal, detail)

        return await self._submit(dispatcher, principal, command, args, record, bank=bank)

    async def act(
        self,
        dispatcher: Dispatcher,
        principal: Principal,
        parcel: Any,
        action: str,
        *,
        now_ms: int,
        idempotency_key: str | None,
        detail: Mapping[str, Any] | None = None,
    ) -> Issued:
        """Send ``action`` (reopen, cancel, retrieve or pickup) for an existing parcel.

        ``parcel`` is a parcel row with its bank's ``bank_local``. Raises Conflict
        (``wrong_state``) when the parcel's state does not allow the action.
        """
        if action not in STATES_FOR:
            raise ValueError(f"not a command on an existing parcel: {action!r}")
        if idempotency_key is not None:
            earlier = await self._by_key(principal.account_id, idempotency_key)
            if earlier is not None:
                return self._same(earlier, action, parcel_id=parcel.id)
        if parcel.state not in STATES_FOR[action]:
            raise Conflict(
                f"the parcel is {parcel.state}: {action} is not possible", code="wrong_state"
            )
        bank = _BankOf(parcel.bank_id, parcel.site_id, parcel.gateway_id, parcel.bank_local)
        command = self._command(principal, bank, action, parcel.id, now_ms, idempotency_key)
        args: dict[str, int | str] = {"parcel": parcel.id}
        if action == RETRIEVE:
            args["courier"] = principal.account_id
        full = {"command": command.id, "parcel": parcel.id, **(detail or {})}

        async def record(conn: AsyncConnection) -> None:
            await self._record(conn, command, principal, full)

        return await self._submit(dispatcher, principal, command, args, record, parcel_id=parcel.id)

    def _command(
        self,
        principal: Principal,
        bank: Any,
        action: str,
        parcel_id: str,
        now_ms: int,
        idempotency_key: str | None,
    ) -> Command:
        return Command(
            id=uuid.uuid4().hex,
            site_id=bank.site_id,
            gateway_id=bank.gateway_id,
            target=bank.local_id,
            door_id=None,
            meter_id=None,
            parcel_id=parcel_id,
            account_id=principal.account_id,
            action=action,
            status=CommandStatus.QUEUED.value,
            idempotency_key=idempotency_key,
            issued_at=now_ms,
            expires_at=now_ms + self.command_ttl_ms,
            updated_at=now_ms,
        )

    async def _submit(
        self,
        dispatcher: Dispatcher,
        principal: Principal,
        command: Command,
        args: Mapping[str, int | str],
        record: Callable[[AsyncConnection], Awaitable[None]],
        *,
        bank: Any = None,
        parcel_id: str | None = None,
    ) -> Issued:
        assert command.parcel_id is not None
        try:
            status = await dispatcher.submit(command, args, record)
        except IntegrityError:
            # A concurrent retry with the same key won the insert: answer with its command.
            earlier = None
            if command.idempotency_key is not None:
                earlier = await self._by_key(principal.account_id, command.idempotency_key)
            if earlier is None:
                raise
            return self._same(earlier, command.action, bank=bank, parcel_id=parcel_id)
        return Issued(command, status, command.parcel_id, True)

    @staticmethod
    async def _record(
        conn: AsyncConnection, command: Command, principal: Principal, detail: Mapping[str, Any]
    ) -> None:
        """Insert the command row and append its audit record, in the caller's transaction."""
        await conn.execute(
            _INSERT_COMMAND,
            {
                "id": command.id,
                "site_id": command.site_id,
                "gateway_id": command.gateway_id,
                "target": command.target,
                "door_id": None,
                "meter_id": None,
                "parcel_id": command.parcel_id,
                "account_id": command.account_id,
                "action": command.action,
                "seq": command.seq,
                "status": command.status,
                "idempotency_key": command.idempotency_key,
                "issued_at": command.issued_at,
                "expires_at": command.expires_at,
                "updated_at": command.updated_at,
            },
        )
        await audit.append(
            conn,
            site_id=command.site_id,
            actor=principal.actor,
            action=command.action,
            obj=f"parcel:{command.parcel_id}",
            detail=dict(detail),
            ts=command.issued_at,
        )

    async def _by_key(self, account_id: int, key: str) -> Command | None:
        async with self.db.session() as session:
            return (
                await session.execute(
                    select(Command).where(
                        col(Command.account_id) == account_id,
                        col(Command.idempotency_key) == key,
                    )
                )
            ).scalar_one_or_none()

    @staticmethod
    def _same(
        command: Command, action: str, *, bank: Any = None, parcel_id: str | None = None
    ) -> Issued:
        same = command.action == action and command.parcel_id is not None
        if bank is not None:
            same = same and (command.gateway_id, command.target) == (bank.gateway_id, bank.local_id)
        if parcel_id is not None:
            same = same and command.parcel_id == parcel_id
        if not same or command.parcel_id is None:
            raise Conflict("this Idempotency-Key was used for another request")
        return Issued(command, CommandStatus(command.status), command.parcel_id, False)


@dataclass(frozen=True, slots=True)
class _BankOf:
    """The bank columns a command needs, taken from a parcel row."""

    id: int
    site_id: int
    gateway_id: str
    local_id: str
