"""The parcel flows at the gateway: deposit, pickup (code, QR, remote), retrieval, cancel, reopen.

The contract is docs/parcels.md; the state model and its persistence are
:mod:`gateway.locker_banks`, and what the boards report between opens is handled by
:mod:`gateway.locker_watch`, which calls back into :class:`Parcels` to record a deposit.

Every flow is a short synchronous transaction that decides and records (allocate, claim), then the
open on the bus (:meth:`gateway.lockers.Lockers.open`, hook read back), then a transaction that
records the outcome with its events. A compartment being opened is marked busy, so the watch never
acts on a reading taken halfway. The rules the flows keep:

* **Exactly one open per pickup.** A pickup first claims the parcel, ``occupied`` → ``opening``, by
  a conditional UPDATE; a second pickup of the same parcel finds it claimed and is refused
  ``already_claimed`` without touching the bus. The fee is computed and stored in the same claim
  transaction, before the door opens; ``parcel.picked_up`` reports it once the hook read back open.
* **A jammed lock is pulsed twice, never more.** Still latched after the second pulse: the
  compartment goes ``out_of_service`` with ``locker_jammed``; a deposit moves on to the next free
  compartment of its size (at most :data:`MAX_DEPOSIT_COMPARTMENTS` in all), a pickup puts the
  parcel back to ``occupied``.
* **The cloud learns the courier's compartment while the door is open.** The verified open of a
  deposit or a reopen (after a jam: of the compartment it was reassigned to) is recorded with
  ``parcel.opened`` {parcel, bank, compartment, for: ``deposit``/``reopen``}, in the transaction
  that also records the command's ``opened`` (which follows it in the outbox).
* **Nothing is assumed about a door that did not answer.** When the read-back fails (the board
  stopped answering), the compartment is left *being cleared* (``reserved``/``occupied`` without a
  parcel, see :mod:`gateway.locker_banks`) so the watch frees it only once it reads it latched and
  empty; the flow is refused ``board_offline``.

Refusals are :class:`ParcelRefused` with a :class:`Refusal` reason; successes return
:class:`Opened` once the hook read back open.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

import structlog

from cloud_sync.protocol.parcel_fees import HOUR_MS, FeeRule, fee_cents
from cloud_sync.protocol.pickup_code import choose_code, code_index, is_code_shaped
from gateway.bus_errors import BusError, UnknownDeviceError
from gateway.errors import ConfigError, GatewayError
from gateway.locker_banks import (
    HOLDS_CODE,
    IN_DEPOSIT,
    Alarm,
    CodeLockout,
    Compartment,
    CompartmentState,
    LockerBanks,
    Parcel,
    ParcelState,
)
from gateway.lockers import Lockers
from gateway.settings import CompartmentSize, ParcelRules
from gateway.store import Transaction
from trust import KeyFileError, read_secret

__all__ = [
    "CODE_KEY_BYTES",
    "MAX_DEPOSIT_COMPARTMENTS",
    "PARCEL_CANCELLED",
    "PARCEL_DEPOSITED",
    "PARCEL_DEPOSIT_EMPTY",
    "PARCEL_OPENED",
    "PARCEL_PICKED_UP",
    "PARCEL_RETRIEVED",
    "DepositRequest",
    "OpenFor",
    "Opened",
    "ParcelRefused",
    "Parcels",
    "Record",
    "Refusal",
    "load_code_key",
]

log = structlog.get_logger(__name__)

PARCEL_OPENED: Final = "parcel.opened"
PARCEL_DEPOSITED: Final = "parcel.deposited"
PARCEL_DEPOSIT_EMPTY: Final = "parcel.deposit_empty"
PARCEL_CANCELLED: Final = "parcel.cancelled"
PARCEL_PICKED_UP: Final = "parcel.picked_up"
PARCEL_RETRIEVED: Final = "parcel.retrieved"

CODE_KEY_BYTES: Final = 32
MAX_DEPOSIT_COMPARTMENTS: Final = 3
"""A deposit tries at most this many compartments before it is refused ``jammed``."""
PULSES: Final = 2
"""Pulses per open: the first, and one retry if the hook still reads latched."""
OPEN_WITHIN_S: Final = 10.0
"""How long one pulse-and-read-back may wait for the bus."""
MAX_CODE_INPUT: Final = 16
"""Keypad input longer than this is not even hashed."""

PARCEL_ID: Final = re.compile(r"[0-9a-f]{32}")

PickupVia = Literal["code", "qr", "remote"]
Record = Callable[[Transaction], None]
"""Called inside the transaction that records a flow's success (a command's status, say)."""
DepositVia = Literal["command", "terminal"]
OpenFor = Literal["deposit", "reopen"]
"""Why a compartment was opened for the courier (``for`` of ``parcel.opened``)."""


class Refusal(StrEnum):
    """Why a parcel flow refused (reported as a failed command's ``reason``)."""

    NOT_FOUND = "not_found"
    """No such bank, no such parcel in the bank, or not in a state the action applies to."""
    ALREADY_CLAIMED = "already_claimed"
    """Another pickup or retrieval has it, or it is gone."""
    LOCKED_OUT = "locked_out"
    """The bank's keypad is locked after too many wrong codes."""
    WRONG_CODE = "wrong_code"
    NO_FREE_COMPARTMENT = "no_free_compartment"
    JAMMED = "jammed"
    BOARD_OFFLINE = "board_offline"
    NOT_OVERDUE = "not_overdue"
    """A retrieval before the retention time has passed."""
    NOT_YOUR_PARCEL = "not_your_parcel"
    """A retrieval by a courier who did not deposit the parcel."""
    DUPLICATE = "duplicate"
    """A deposit with a parcel id this gateway already has."""
    WRONG_STATE = "wrong_state"
    """``reopen``/``cancel`` of a parcel that is not waiting for its courier."""


class ParcelRefused(GatewayError):
    """A parcel flow refused; ``reason`` says why (``locked_until_ms`` with ``locked_out``)."""

    def __init__(
        self, reason: Refusal, parcel: str | None = None, *, locked_until_ms: int | None = None
    ) -> None:
        super().__init__(reason.value if parcel is None else f"{reason.value}: {parcel}")
        self.reason = reason
        self.parcel = parcel
        self.locked_until_ms = locked_until_ms


@dataclass(frozen=True, slots=True)
class Opened:
    """A compartment's door read back open for a flow."""

    parcel: str
    bank: str
    compartment: int


@dataclass(frozen=True, slots=True)
class DepositRequest:
    """A courier's deposit: which parcel, for whom, of what size (validated by the caller)."""

    bank: str
    parcel: str
    size: CompartmentSize
    unit: str
    courier: int | None = None
    company: str | None = None
    via: DepositVia = "command"


class _Door(StrEnum):
    OPEN = "open"
    JAMMED = "jammed"
    OFFLINE = "offline"


def load_code_key(path: Path) -> bytes:
    """The 32-byte site code key from ``path`` (mode 0600, as every secret file); ConfigError."""
    try:
        key = read_secret(path)
    except KeyFileError as exc:
        raise ConfigError("parcels.code_key_file", exc.reason) from exc
    if len(key) != CODE_KEY_BYTES:
        raise ConfigError("parcels.code_key_file", f"a site code key is {CODE_KEY_BYTES} bytes")
    return key


class Parcels:
    """The parcel flows of every bank of one gateway; see the module docstring."""

    def __init__(
        self,
        rules: ParcelRules,
        banks: LockerBanks,
        lockers: Lockers,
        code_key: bytes,
    ) -> None:
        if len(code_key) != CODE_KEY_BYTES:
            raise ValueError(f"a site code key is {CODE_KEY_BYTES} bytes")
        self.rules = rules
        self.banks = banks
        self._lockers = lockers
        self._key = code_key
        self._fee = FeeRule(
            free_h=rules.free_h,
            period_h=rules.fee_period_h,
            per_period_cents=rules.fee_per_period_cents,
            cap_cents=rules.fee_cap_cents,
        )
        self._lockout = CodeLockout(
            attempts=rules.code_lockout_attempts,
            window_ms=rules.code_lockout_window_s * 1000,
            lockout_ms=rules.code_lockout_s * 1000,
            max_ms=rules.code_lockout_max_s * 1000,
        )

    @property
    def _clock(self) -> Callable[[], int]:
        return self.banks.clock

    # -- opening a door ------------------------------------------------------------------------

    async def _open(self, c: Compartment) -> _Door:
        """Pulse ``c``'s lock (twice if the hook stays latched) and say how it ended."""
        for _ in range(PULSES):
            try:
                state = await self._lockers.open(c.board, c.lock, within_s=OPEN_WITHIN_S)
            except (BusError, UnknownDeviceError) as exc:
                log.warning("locker.open_failed", bank=c.bank, compartment=c.no, error=str(exc))
                self.banks.mark_board(c.board, False)
                return _Door.OFFLINE
            self.banks.mark_board(c.board, True)
            if state.opened:
                self.banks.opened(c.key, self._clock())
                return _Door.OPEN
            log.warning("locker.still_latched", bank=c.bank, compartment=c.no)
        return _Door.JAMMED

    def _check_bank(self, bank: str) -> None:
        if self.banks.bank(bank) is None:
            raise ParcelRefused(Refusal.NOT_FOUND)

    # -- deposit -------------------------------------------------------------------------------

    async def deposit(self, request: DepositRequest, *, record: Record | None = None) -> Opened:
        """Allocate a compartment for ``request``, open it for the courier; the watch records it.

        Refused ``duplicate``, ``no_free_compartment``, ``board_offline`` or ``jammed``; nothing
        of a refused deposit is kept but the compartments its jams took out of service.
        """
        self._check_bank(request.bank)
        now = self._clock()
        with self.banks.store.transaction() as tx:
            if self.banks.get_parcel(tx, request.parcel) is not None:
                raise ParcelRefused(Refusal.DUPLICATE, request.parcel)
            c = self._allocate(tx, request.bank, request.size, request.parcel)
            self.banks.insert_parcel(
                tx,
                id=request.parcel,
                bank=request.bank,
                compartment=c.no,
                size=request.size,
                unit=request.unit,
                courier=request.courier,
                company=request.company,
                deposit_via=request.via,
                state=ParcelState.RESERVED.value,
                changed_ms=now,
            )
        log.info("parcel.reserved", parcel=request.parcel, bank=request.bank, compartment=c.no)
        return await self._open_for_courier(request.parcel, c, record, "deposit")

    def _allocate(self, tx: Transaction, bank: str, size: str, parcel: str) -> Compartment:
        c = self.banks.allocate(tx, bank, size)
        if c is None:
            anywhere = self.banks.allocate(tx, bank, size, skip_offline=False)
            raise ParcelRefused(
                Refusal.NO_FREE_COMPARTMENT if anywhere is None else Refusal.BOARD_OFFLINE, parcel
            )
        self.banks.set_compartment(tx, c, CompartmentState.RESERVED, parcel)
        return c

    async def _open_for_courier(
        self, parcel: str, c: Compartment, record: Record | None, purpose: OpenFor
    ) -> Opened:
        """Open ``c`` (reserved for ``parcel``), moving on after jams; the parcel awaits close."""
        tried = 1
        while True:
            with self.banks.busy(c.key):
                door = await self._open(c)
                refusal, nxt = self._after_courier_open(parcel, c, door, tried, record, purpose)
            if refusal is not None:
                raise ParcelRefused(refusal, parcel)
            if nxt is None:
                log.info("parcel.door_open", parcel=parcel, bank=c.bank, compartment=c.no)
                return Opened(parcel, c.bank, c.no)
            log.warning("parcel.reassigned", parcel=parcel, frm=c.no, to=nxt.no)
            c, tried = nxt, tried + 1

    def _after_courier_open(
        self,
        parcel: str,
        c: Compartment,
        door: _Door,
        tried: int,
        record: Record | None,
        purpose: OpenFor,
    ) -> tuple[Refusal | None, Compartment | None]:
        """Record how an open for the courier ended: (refusal, or the next compartment to try).

        A verified open is recorded with ``parcel.opened`` (the compartment the courier is to
        use: after a jam, the one the parcel was reassigned to), before the command's status.
        """
        now = self._clock()
        with self.banks.store.transaction() as tx:
            current = self.banks.get_compartment(tx, c.key)
            if door is _Door.OPEN:
                if self.banks.move_parcel(
                    tx,
                    parcel,
                    IN_DEPOSIT,
                    ParcelState.AWAITING_CLOSE,
                    compartment=c.no,
                    opened_ms=now,
                ):
                    self._opened_event(tx, parcel, c, purpose)
                if record is not None:
                    record(tx)
                return None, None
            if door is _Door.OFFLINE:
                # The pulse may have fired: the door is cleared by the watch, never assumed shut.
                self.banks.set_compartment(tx, current, CompartmentState.RESERVED, None)
                self._drop_deposit(tx, parcel, Refusal.BOARD_OFFLINE)
                return Refusal.BOARD_OFFLINE, None
            # Jammed: the door never opened, so nothing of the parcel is behind it.
            self.banks.take_out_of_service(tx, current, Alarm.JAMMED, "jammed", parcel=None)
            nxt = None
            if tried < MAX_DEPOSIT_COMPARTMENTS:
                nxt = self.banks.allocate(tx, c.bank, c.size)
            if nxt is None:
                self._drop_deposit(tx, parcel, Refusal.JAMMED)
                return Refusal.JAMMED, None
            self.banks.set_compartment(tx, nxt, CompartmentState.RESERVED, parcel)
            self.banks.move_parcel(tx, parcel, IN_DEPOSIT, ParcelState.RESERVED, compartment=nxt.no)
            return None, nxt

    def _opened_event(self, tx: Transaction, parcel: str, c: Compartment, purpose: OpenFor) -> None:
        self.banks.outbox.append(
            tx,
            PARCEL_OPENED,
            {"parcel": parcel, "bank": c.bank, "compartment": c.no, "for": purpose},
        )

    def door_found_open(self, tx: Transaction, found: Parcel, c: Compartment) -> None:
        """A deposit ``reserved`` by an earlier run whose door reads open: the open happened.

        The parcel waits for the courier to close the door (``parcel.opened``, ``for``
        ``reopen`` if its compartment had been opened for it before).
        """
        purpose: OpenFor = "reopen" if found.opened_ms is not None else "deposit"
        if self.banks.move_parcel(
            tx,
            found.id,
            frozenset({ParcelState.RESERVED}),
            ParcelState.AWAITING_CLOSE,
            opened_ms=self._clock(),
        ):
            self._opened_event(tx, found.id, c, purpose)

    def _drop_deposit(self, tx: Transaction, parcel: str, why: Refusal) -> None:
        """A deposit whose door could not be opened: forgotten if it never had one open (no
        event was sent about it), else (a reopen) cancelled with ``why`` as the reason."""
        found = self.banks.get_parcel(tx, parcel)
        if found is None:
            return
        if found.state is ParcelState.RESERVED and found.opened_ms is None:
            self.banks.delete_parcel(tx, parcel)
        else:
            self._cancel_in(tx, found, why.value)

    async def reopen(self, bank: str, parcel: str, *, record: Record | None = None) -> Opened:
        """Open the compartment of a deposit waiting for its courier again (``retry``)."""
        self._check_bank(bank)
        with self.banks.store.transaction() as tx:
            found = self.banks.get_parcel(tx, parcel)
            if found is None or found.bank != bank:
                raise ParcelRefused(Refusal.NOT_FOUND, parcel)
            if found.state not in (ParcelState.EMPTY, ParcelState.AWAITING_CLOSE):
                raise ParcelRefused(Refusal.WRONG_STATE, parcel)
            assert found.compartment is not None
            c = self.banks.get_compartment(tx, (bank, found.compartment))
            if self.banks.is_busy(c.key):
                raise ParcelRefused(Refusal.ALREADY_CLAIMED, parcel)
        return await self._open_for_courier(parcel, c, record, "reopen")

    def cancel(
        self, bank: str, parcel: str, reason: str = "courier", *, record: Record | None = None
    ) -> None:
        """Cancel a deposit waiting for its courier (``parcel.cancelled``).

        Its compartment is ``free`` again at once when the door was last read latched and empty
        (the ``empty`` state); otherwise it is cleared by the watch.
        """
        self._check_bank(bank)
        with self.banks.store.transaction() as tx:
            found = self.banks.get_parcel(tx, parcel)
            if found is None or found.bank != bank:
                raise ParcelRefused(Refusal.NOT_FOUND, parcel)
            if found.state not in (ParcelState.EMPTY, ParcelState.AWAITING_CLOSE):
                raise ParcelRefused(Refusal.WRONG_STATE, parcel)
            if found.compartment is not None and self.banks.is_busy((bank, found.compartment)):
                raise ParcelRefused(Refusal.ALREADY_CLAIMED, parcel)
            self._cancel_in(tx, found, reason)
            if record is not None:
                record(tx)

    def _cancel_in(self, tx: Transaction, found: Parcel, reason: str) -> None:
        if not self.banks.move_parcel(tx, found.id, IN_DEPOSIT, ParcelState.CANCELLED):
            raise ParcelRefused(Refusal.WRONG_STATE, found.id)
        if found.compartment is not None:
            c = self.banks.get_compartment(tx, (found.bank, found.compartment))
            if c.parcel == found.id:
                closed_and_empty = found.state is ParcelState.EMPTY
                state = CompartmentState.FREE if closed_and_empty else CompartmentState.RESERVED
                self.banks.set_compartment(tx, c, state, None)
        self.banks.outbox.append(
            tx, PARCEL_CANCELLED, {"parcel": found.id, "bank": found.bank, "reason": reason}
        )
        log.info("parcel.cancelled", parcel=found.id, bank=found.bank, reason=reason)

    # -- what the watch reports about a deposit ------------------------------------------------

    def deposited(self, tx: Transaction, found: Parcel, c: Compartment) -> None:
        """The door of ``found``'s compartment closed on something: record the parcel."""
        now = self._clock()
        n, _code, index = choose_code(
            self._key,
            found.id,
            found.bank,
            self.banks.taken_indexes(tx, found.bank),
            self.rules.code_digits,
        )
        if not self.banks.move_parcel(
            tx,
            found.id,
            frozenset({ParcelState.AWAITING_CLOSE, ParcelState.EMPTY, ParcelState.RESERVED}),
            ParcelState.OCCUPIED,
            code_n=n,
            code_index=index,
            deposited_ms=now,
        ):
            return
        self.banks.set_compartment(tx, c, CompartmentState.OCCUPIED, found.id)
        data: dict[str, Any] = {
            "parcel": found.id,
            "bank": found.bank,
            "compartment": c.no,
            "size": found.size,
            "unit": found.unit,
            "code_n": n,
            "deposited_at": now,
            "via": found.deposit_via,
        }
        if found.courier is not None:
            data["courier"] = found.courier
        if found.company is not None:
            data["company"] = found.company
        self.banks.outbox.append(tx, PARCEL_DEPOSITED, data)
        log.info("parcel.deposited", parcel=found.id, bank=found.bank, compartment=c.no)

    def deposit_empty(self, tx: Transaction, found: Parcel, c: Compartment) -> None:
        """The courier closed the door with nothing inside: wait for ``reopen`` or ``cancel``."""
        if self.banks.move_parcel(
            tx,
            found.id,
            frozenset({ParcelState.AWAITING_CLOSE, ParcelState.RESERVED}),
            ParcelState.EMPTY,
        ):
            self.banks.outbox.append(
                tx,
                PARCEL_DEPOSIT_EMPTY,
                {"parcel": found.id, "bank": found.bank, "compartment": c.no},
            )

    def expire(self, tx: Transaction, found: Parcel) -> None:
        """A deposit left ``empty`` past ``deposit_timeout_s``: cancelled (``timeout``)."""
        if found.state is ParcelState.EMPTY:
            self._cancel_in(tx, found, "timeout")

    # -- pickup --------------------------------------------------------------------------------

    async def pickup(
        self, bank: str, parcel: str, via: PickupVia, *, record: Record | None = None
    ) -> Opened:
        """Open ``parcel``'s compartment for its recipient (a verified QR, or a remote command)."""
        self._check_bank(bank)
        return await self._claim_and_open(bank, parcel, via, record)

    async def pickup_by_code(self, bank: str, code: str, *, record: Record | None = None) -> Opened:
        """Open the compartment whose parcel has pickup code ``code`` (typed at the keypad).

        Refused ``locked_out`` while the keypad is locked (not counted as an attempt) and
        ``wrong_code`` (counted) for a code no parcel of the bank holds.
        """
        self._check_bank(bank)
        now = self._clock()
        with self.banks.store.transaction() as tx:
            until = self._lockout.locked_until(tx, bank, now)
            if until is not None:
                raise ParcelRefused(Refusal.LOCKED_OUT, locked_until_ms=until)
            found = None
            if len(code) <= MAX_CODE_INPUT and is_code_shaped(code, self.rules.code_digits):
                found = self.banks.parcel_by_code(bank, code_index(self._key, bank, code))
            if found is None:
                locked = self._lockout.failed(tx, bank, now)
                if locked is not None:
                    log.warning("parcel.keypad_locked", bank=bank, until=locked)
        if found is None:
            raise ParcelRefused(Refusal.WRONG_CODE)
        with self.banks.store.transaction() as tx:
            self._lockout.succeeded(tx, bank)
        return await self._claim_and_open(bank, found.id, "code", record)

    async def retrieve(
        self, bank: str, parcel: str, courier: int, *, record: Record | None = None
    ) -> Opened:
        """Open an overdue parcel's compartment for the courier who deposited it (no fee)."""
        self._check_bank(bank)
        found = self.banks.parcel(parcel)
        if found is None or found.bank != bank:
            raise ParcelRefused(Refusal.NOT_FOUND, parcel)
        if found.courier is None or found.courier != courier:
            raise ParcelRefused(Refusal.NOT_YOUR_PARCEL, parcel)
        if found.state in HOLDS_CODE and found.deposited_ms is not None:
            due = found.deposited_ms + self.rules.retention_h * HOUR_MS
            if self._clock() < due:
                raise ParcelRefused(Refusal.NOT_OVERDUE, parcel)
        return await self._claim_and_open(bank, parcel, "courier", record)

    async def _claim_and_open(
        self, bank: str, parcel: str, via: str, record: Record | None
    ) -> Opened:
        now = self._clock()
        with self.banks.store.transaction() as tx:
            found = self.banks.get_parcel(tx, parcel)
            if (
                found is None
                or found.bank != bank
                or found.state
                not in HOLDS_CODE
                | {
                    ParcelState.PICKED_UP,
                    ParcelState.RETRIEVED,
                }
            ):
                raise ParcelRefused(Refusal.NOT_FOUND, parcel)
            assert found.compartment is not None
            assert found.deposited_ms is not None
            fee = 0 if via == "courier" else fee_cents(now - found.deposited_ms, self._fee)
            if not self.banks.move_parcel(
                tx,
                parcel,
                frozenset({ParcelState.OCCUPIED}),
                ParcelState.OPENING,
                fee_cents=fee,
                via=via,
            ):
                raise ParcelRefused(Refusal.ALREADY_CLAIMED, parcel)
            c = self.banks.get_compartment(tx, (bank, found.compartment))
            self.banks.touch(tx, c.key)
        log.info("parcel.claimed", parcel=parcel, bank=bank, compartment=c.no, via=via)
        with self.banks.busy(c.key):
            door = await self._open(c)
            now = self._clock()
            with self.banks.store.transaction() as tx:
                c = self.banks.get_compartment(tx, c.key)
                if door is _Door.OPEN:
                    self._picked_up(tx, found, c, via, fee, now)
                    if record is not None:
                        record(tx)
                    return Opened(parcel, bank, c.no)
                back = frozenset({ParcelState.OPENING})
                self.banks.move_parcel(tx, parcel, back, ParcelState.OCCUPIED, fee_cents=None)
                if door is _Door.JAMMED:
                    self.banks.take_out_of_service(tx, c, Alarm.JAMMED, "jammed")
            raise ParcelRefused(
                Refusal.JAMMED if door is _Door.JAMMED else Refusal.BOARD_OFFLINE, parcel
            )

    def _picked_up(
        self, tx: Transaction, found: Parcel, c: Compartment, via: str, fee: int, now: int
    ) -> None:
        """Record a verified open of a claimed parcel; the compartment is cleared by the watch."""
        retrieved = via == "courier"
        to = ParcelState.RETRIEVED if retrieved else ParcelState.PICKED_UP
        self.banks.move_parcel(tx, found.id, frozenset({ParcelState.OPENING}), to, picked_ms=now)
        self.banks.set_compartment(tx, c, CompartmentState.OCCUPIED, None)
        if retrieved:
            self.banks.outbox.append(
                tx,
                PARCEL_RETRIEVED,
                {
                    "parcel": found.id,
                    "bank": found.bank,
                    "compartment": c.no,
                    "courier": found.courier,
                    "at": now,
                },
            )
        else:
            self.banks.outbox.append(
                tx,
                PARCEL_PICKED_UP,
                {
                    "parcel": found.id,
                    "bank": found.bank,
                    "compartment": c.no,
                    "via": via,
                    "at": now,
                    "fee_cents": fee,
                    "fee_state": "owed",
                },
            )
        log.info("parcel." + to.value, parcel=found.id, bank=found.bank, compartment=c.no)

    def resolve_claim(
        self, tx: Transaction, found: Parcel, c: Compartment, *, opened: bool
    ) -> None:
        """A claim left ``opening`` by an earlier run: decide from the board what happened.

        A door open, or latched with nothing inside, means the open happened: it is recorded
        (with the fee stored at the claim). Latched with the parcel still sensed: back to
        ``occupied`` (the recipient may try again).
        """
        via = found.via or "remote"
        if opened:
            self._picked_up(tx, found, c, via, found.fee_cents or 0, self._clock())
        else:
            back = frozenset({ParcelState.OPENING})
            self.banks.move_parcel(tx, found.id, back, ParcelState.OCCUPIED, fee_cents=None)
