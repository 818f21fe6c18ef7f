"""The locker banks' compartments and parcels as the gateway stores them (docs/parcels.md).

:class:`LockerBanks` is the persistence and state model under the parcel flows
(:mod:`gateway.parcels`) and the board watch (:mod:`gateway.locker_watch`); it decides nothing
about hardware. Its rows:

* ``compartments``: one per configured compartment, ``state`` one of :class:`CompartmentState`,
  ``parcel`` the parcel it holds or is reserved for. A ``reserved`` or ``occupied`` compartment
  whose ``parcel`` is NULL is being *cleared*: a pickup, retrieval or cancelled deposit opened it,
  and it becomes ``free`` only once the watch reads its door latched and its infrared empty.
* ``parcels``: every parcel with its :class:`ParcelState`, its pickup code's index (never the
  code), the times and the fee.
* ``code_failures`` / ``code_lockouts``: the wrong codes typed at each bank's keypad and its
  lockout (:class:`CodeLockout`).

Every change goes through a caller's :meth:`Store.transaction` together with the outbox events it
causes, so a state and its report commit together. Compartment rows are seeded from the settings
at start-up (:meth:`LockerBanks.load`): new compartments start ``free``, rewired ones take their
new board and lock, and removed ones are deleted — unless they still hold a parcel, in which
case they stay, ``out_of_service`` with reason ``unconfigured``, until an engineer empties them.

Besides the rows, a few facts live in memory only, because they describe this run: which boards
answer (:meth:`LockerBanks.board_online`), which compartments a flow is opening right now
(:meth:`LockerBanks.busy`), when each compartment was last opened on purpose, and a version number
per compartment that every committed change bumps, so the watch can tell a board reading taken
before a change from one taken after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import structlog

from gateway.outbox import Outbox
from gateway.settings import LockerBankSettings
from gateway.store import Store, Transaction

__all__ = [
    "FINISHED",
    "GATEWAY_ALARM",
    "HOLDS_CODE",
    "IN_DEPOSIT",
    "LOCKER_STATE",
    "Alarm",
    "CodeLockout",
    "Compartment",
    "CompartmentKey",
    "CompartmentState",
    "LockerBanks",
    "Parcel",
    "ParcelState",
]

log = structlog.get_logger(__name__)

LOCKER_STATE: Final = "locker.state"
"""Event: a compartment left or re-entered service (``bank, compartment, state, reason?``)."""
GATEWAY_ALARM: Final = "gateway.alarm"
"""Event: the gateway's alarm (the same type :mod:`gateway.commands` raises ``bad_command`` as)."""


class CompartmentState(StrEnum):
    """A compartment's state at the gateway."""

    FREE = "free"
    RESERVED = "reserved"
    OCCUPIED = "occupied"
    OUT_OF_SERVICE = "out_of_service"


class ParcelState(StrEnum):
    """Where a parcel is in its life at the gateway."""

    RESERVED = "reserved"
    """A compartment is allocated; its door is being opened for the courier."""
    AWAITING_CLOSE = "awaiting_close"
    """The door is open for the courier."""
    EMPTY = "empty"
    """The courier closed the door with nothing inside: waiting for ``reopen`` or ``cancel``."""
    OCCUPIED = "occupied"
    """Deposited; its pickup code is live."""
    OPENING = "opening"
    """Claimed by a pickup or retrieval whose door is being opened."""
    PICKED_UP = "picked_up"
    RETRIEVED = "retrieved"
    CANCELLED = "cancelled"


IN_DEPOSIT: Final = frozenset({ParcelState.RESERVED, ParcelState.AWAITING_CLOSE, ParcelState.EMPTY})
"""A deposit under way: the compartment is ``reserved`` for the parcel."""
HOLDS_CODE: Final = frozenset({ParcelState.OCCUPIED, ParcelState.OPENING})
"""The parcel is in its compartment and its pickup code is taken in the bank."""
FINISHED: Final = frozenset({ParcelState.PICKED_UP, ParcelState.RETRIEVED, ParcelState.CANCELLED})


class Alarm(StrEnum):
    """The ``kind`` of a locker ``gateway.alarm`` (docs/parcels.md "Alarms")."""

    JAMMED = "locker_jammed"
    LEFT_OPEN = "locker_left_open"
    SENSOR_MISMATCH = "locker_sensor_mismatch"
    BOARD_OFFLINE = "lockboard_offline"
    FORCED = "locker_forced"
    RECONCILED = "locker_reconciled"


CompartmentKey = tuple[str, int]
"""``(bank, no)``."""


@dataclass(frozen=True, slots=True)
class Compartment:
    """One compartment row."""

    bank: str
    no: int
    board: str
    lock: int
    size: str
    state: CompartmentState
    parcel: str | None
    reason: str | None
    changed_ms: int

    @property
    def key(self) -> CompartmentKey:
        """``(bank, no)``."""
        return (self.bank, self.no)

    @property
    def clearing(self) -> bool:
        """Opened for a pickup, retrieval or cancelled deposit; free once closed and empty."""
        return self.parcel is None and self.state in (
            CompartmentState.RESERVED,
            CompartmentState.OCCUPIED,
        )


def _compartment(row: Sequence[Any]) -> Compartment:
    bank, no, board, lock, size, state, parcel, reason, changed = row
    return Compartment(
        bank, no, board, lock, size, CompartmentState(state), parcel, reason, changed
    )


@dataclass(frozen=True, slots=True)
class Parcel:
    """One parcel row."""

    id: str
    bank: str
    compartment: int | None
    size: str
    unit: str
    courier: int | None
    company: str | None
    deposit_via: str
    state: ParcelState
    code_n: int | None
    code_index: str | None
    opened_ms: int | None
    """When its door was last opened for the courier (deposit) or the recipient."""
    deposited_ms: int | None
    picked_ms: int | None
    """When it was picked up or retrieved."""
    via: str | None
    """How it was picked up (``code``, ``qr``, ``remote``) or ``courier`` for a retrieval."""
    fee_cents: int | None
    changed_ms: int
    """When its state last changed."""


_SELECT_PARCELS_BY_ID = (
    "SELECT id, bank, compartment, size, unit, courier, company, deposit_via, state, code_n,"
    " code_index, opened_ms, deposited_ms, picked_ms, via, fee_cents, changed_ms"
    " FROM parcels WHERE id = ?"
)
# The columns a parcel row may be written with (the only names ever put into SQL text).
_PARCEL_FIELDS = frozenset(
    {
        "id",
        "bank",
        "compartment",
        "size",
        "unit",
        "courier",
        "company",
        "deposit_via",
        "state",
        "code_n",
        "code_index",
        "opened_ms",
        "deposited_ms",
        "picked_ms",
        "via",
        "fee_cents",
        "changed_ms",
    }
)


def _parcel(row: Sequence[Any]) -> Parcel:
    values = list(row)
    values[8] = ParcelState(values[8])
    return Parcel(*values)


class _Keep:
    """The default of an optional argument whose None means something."""


_KEEP: Final = _Keep()


class LockerBanks:
    """The compartments and parcels of every configured bank; see the module docstring."""

    def __init__(
        self,
        banks: Sequence[LockerBankSettings],
        store: Store,
        outbox: Outbox,
        clock: Callable[[], int],
    ) -> None:
        self._banks = {bank.id: bank for bank in banks}
        self._store = store
        self._outbox = outbox
        self.clock = clock
        """Wall-clock milliseconds (injectable: fees, retention and time-outs follow it)."""
        self._versions: dict[CompartmentKey, int] = {}
        self._busy: set[CompartmentKey] = set()
        self._opened_at: dict[CompartmentKey, int] = {}
        self._online: dict[str, bool | None] = {
            c.board: None for bank in banks for c in bank.compartments
        }

    # -- configuration -------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The gateway database."""
        return self._store

    @property
    def outbox(self) -> Outbox:
        """The outbox events are appended to."""
        return self._outbox

    def bank(self, bank_id: str) -> LockerBankSettings | None:
        """The configured bank ``bank_id``, if any."""
        return self._banks.get(bank_id)

    def bank_ids(self) -> list[str]:
        """Every configured bank, in configuration order."""
        return list(self._banks)

    def boards(self) -> list[str]:
        """Every lock board some configured compartment sits on, sorted."""
        return sorted(self._online)

    def banks_on(self, board: str) -> list[str]:
        """The banks with a compartment on ``board``."""
        return [b.id for b in self._banks.values() if any(c.board == board for c in b.compartments)]

    def load(self) -> list[CompartmentKey]:
        """Seed and reconcile the compartment rows with the settings (start-up; see module doc).

        Returns the compartments kept out of service because they were removed from the
        configuration while holding a parcel.
        """
        now = self.clock()
        configured = {
            (bank.id, c.no): c for bank in self._banks.values() for c in bank.compartments
        }
        kept: list[CompartmentKey] = []
        with self._store.transaction() as tx:
            stored = {
                (row[0], row[1]): _compartment(row)
                for row in tx.execute(
                    "SELECT bank, no, board, lock, size, state, parcel, reason, changed_ms"
                    " FROM compartments"
                )
            }
            for key, c in configured.items():
                old = stored.get(key)
                if old is None:
                    tx.execute(
                        "INSERT INTO compartments"
                        " (bank, no, board, lock, size, state, parcel, reason, changed_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                        (*key, c.board, c.lock, c.size, CompartmentState.FREE.value, now),
                    )
                elif (old.board, old.lock, old.size) != (c.board, c.lock, c.size):
                    log.warning(
                        "locker.rewired",
                        bank=key[0],
                        compartment=key[1],
                        board=c.board,
                        lock=c.lock,
                        size=c.size,
                    )
                    tx.execute(
                        "UPDATE compartments SET board = ?, lock = ?, size = ?"
                        " WHERE bank = ? AND no = ?",
                        (c.board, c.lock, c.size, *key),
                    )
            for key, old in stored.items():
                if key in configured:
                    continue
                if self._holds_parcel(tx, old):
                    kept.append(key)
                    if old.state is not CompartmentState.OUT_OF_SERVICE:
                        self._set_state(
                            tx, old, CompartmentState.OUT_OF_SERVICE, old.parcel, "unconfigured"
                        )
                    log.warning("locker.unconfigured_with_parcel", bank=key[0], compartment=key[1])
                else:
                    tx.execute("DELETE FROM compartments WHERE bank = ? AND no = ?", key)
        return kept

    @staticmethod
    def _holds_parcel(tx: Transaction, c: Compartment) -> bool:
        if c.parcel is None:
            return c.clearing
        row = tx.execute("SELECT state FROM parcels WHERE id = ?", (c.parcel,)).fetchone()
        return row is not None and ParcelState(row[0]) not in FINISHED

    # -- what this run knows -------------------------------------------------------------------

    def version(self, key: CompartmentKey) -> int:
        """Bumped by every committed change of the compartment or its parcel."""
        return self._versions.get(key, 0)

    def touch(self, tx: Transaction, key: CompartmentKey) -> None:
        """Bump ``key``'s version when ``tx`` commits."""
        tx.on_commit(lambda: self._bump(key))

    def _bump(self, key: CompartmentKey) -> None:
        self._versions[key] = self._versions.get(key, 0) + 1

    def is_busy(self, key: CompartmentKey) -> bool:
        """Whether a flow is opening the compartment right now (the watch leaves it alone)."""
        return key in self._busy

    @contextlib.contextmanager
    def busy(self, key: CompartmentKey) -> Iterator[None]:
        """Mark the compartment as being opened by a flow for the duration of the block."""
        self._busy.add(key)
        self._bump(key)
        try:
            yield
        finally:
            self._busy.discard(key)
            self._bump(key)

    def opened(self, key: CompartmentKey, at_ms: int) -> None:
        """Note a commanded open that read back open (the left-open timer starts here)."""
        self._opened_at[key] = at_ms

    def opened_at(self, key: CompartmentKey) -> int | None:
        """When the compartment was last opened on purpose in this run, if it was."""
        return self._opened_at.get(key)

    def board_online(self, board: str) -> bool | None:
        """Whether ``board`` answers (None: not asked yet in this run)."""
        return self._online.get(board)

    def mark_board(self, board: str, online: bool) -> bool:
        """Record whether ``board`` answers; on a change, raise or clear ``lockboard_offline``.

        The alarm is raised once per transition to offline and cleared (``cleared: true``) once
        when the board answers again; a board first heard of as online raises nothing. Returns
        whether the state changed.
        """
        before = self._online.get(board)
        if before is online:
            return False
        self._online[board] = online
        if online and before is None:
            return True
        with self._store.transaction() as tx:
            for bank in self.banks_on(board):
                self.alarm(tx, Alarm.BOARD_OFFLINE, bank, board=board, cleared=online)
        log.warning("locker.board_online" if online else "locker.board_offline", board=board)
        return True

    # -- reads ---------------------------------------------------------------------------------

    def compartment(self, bank: str, no: int) -> Compartment | None:
        """One compartment row."""
        rows = self._store.query(
            "SELECT bank, no, board, lock, size, state, parcel, reason, changed_ms"
            " FROM compartments WHERE bank = ? AND no = ?",
            (bank, no),
        )
        return _compartment(rows[0]) if rows else None

    def compartments(self, bank: str | None = None) -> list[Compartment]:
        """Every compartment row (of ``bank``), by bank and number."""
        if bank is None:
            rows = self._store.query(
                "SELECT bank, no, board, lock, size, state, parcel, reason, changed_ms"
                " FROM compartments ORDER BY bank, no"
            )
        else:
            rows = self._store.query(
                "SELECT bank, no, board, lock, size, state, parcel, reason, changed_ms"
                " FROM compartments WHERE bank = ? ORDER BY no",
                (bank,),
            )
        return [_compartment(row) for row in rows]

    def on_board(self, board: str) -> list[Compartment]:
        """The configured compartments on ``board``."""
        configured = {(bank.id, c.no) for bank in self._banks.values() for c in bank.compartments}
        rows = self._store.query(
            "SELECT bank, no, board, lock, size, state, parcel, reason, changed_ms"
            " FROM compartments WHERE board = ? ORDER BY bank, no",
            (board,),
        )
        return [c for c in map(_compartment, rows) if c.key in configured]

    def parcel(self, parcel_id: str) -> Parcel | None:
        """One parcel row."""
        rows = self._store.query(_SELECT_PARCELS_BY_ID, (parcel_id,))
        return _parcel(rows[0]) if rows else None

    def parcels(self, bank: str, states: frozenset[ParcelState] | None = None) -> list[Parcel]:
        """The parcels of ``bank`` (in ``states``), oldest change first."""
        rows = self._store.query(
            "SELECT id, bank, compartment, size, unit, courier, company, deposit_via, state,"
            " code_n, code_index, opened_ms, deposited_ms, picked_ms, via, fee_cents, changed_ms"
            " FROM parcels WHERE bank = ? ORDER BY changed_ms, id",
            (bank,),
        )
        found = [_parcel(row) for row in rows]
        return found if states is None else [p for p in found if p.state in states]

    def parcel_by_code(self, bank: str, index: str) -> Parcel | None:
        """The parcel of ``bank`` holding the code whose index is ``index``."""
        rows = self._store.query(
            "SELECT id, bank, compartment, size, unit, courier, company, deposit_via, state,"
            " code_n, code_index, opened_ms, deposited_ms, picked_ms, via, fee_cents, changed_ms"
            " FROM parcels WHERE bank = ? AND code_index = ? AND state IN ('occupied', 'opening')",
            (bank, index),
        )
        return _parcel(rows[0]) if rows else None

    def taken_indexes(self, tx: Transaction, bank: str) -> set[str]:
        """The code indexes held in ``bank`` (read inside ``tx``)."""
        rows = tx.execute(
            "SELECT code_index FROM parcels WHERE bank = ? AND state IN ('occupied', 'opening')"
            " AND code_index IS NOT NULL",
            (bank,),
        )
        return {row[0] for row in rows}

    # -- writes (inside the caller's transaction) ----------------------------------------------

    def get_compartment(self, tx: Transaction, key: CompartmentKey) -> Compartment:
        """The compartment row as ``tx`` sees it (it must exist)."""
        row = tx.execute(
            "SELECT bank, no, board, lock, size, state, parcel, reason, changed_ms"
            " FROM compartments WHERE bank = ? AND no = ?",
            key,
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return _compartment(row)

    def get_parcel(self, tx: Transaction, parcel_id: str) -> Parcel | None:
        """The parcel row as ``tx`` sees it."""
        row = tx.execute(_SELECT_PARCELS_BY_ID, (parcel_id,))
        found = row.fetchone()
        return _parcel(found) if found else None

    def allocate(
        self, tx: Transaction, bank: str, size: str, *, skip_offline: bool = True
    ) -> Compartment | None:
        """The free compartment of ``size`` with the smallest number, on a board that answers."""
        rows = tx.execute(
            "SELECT bank, no, board, lock, size, state, parcel, reason, changed_ms"
            " FROM compartments WHERE bank = ? AND size = ? AND state = 'free' ORDER BY no",
            (bank, size),
        )
        for c in map(_compartment, rows):
            if self._configured(c) and not (skip_offline and self._online.get(c.board) is False):
                return c
        return None

    def _configured(self, c: Compartment) -> bool:
        bank = self._banks.get(c.bank)
        return bank is not None and any(x.no == c.no for x in bank.compartments)

    def set_compartment(
        self,
        tx: Transaction,
        c: Compartment,
        state: CompartmentState,
        parcel: str | None,
        reason: str | None = None,
    ) -> None:
        """Move compartment ``c`` (as read in ``tx``) to ``state`` holding ``parcel``.

        Leaving or re-entering service appends a ``locker.state`` event. A compartment out of
        service stays so: only :meth:`return_to_service` brings it back.
        """
        if c.state is CompartmentState.OUT_OF_SERVICE and state is not c.state:
            tx.execute(
                "UPDATE compartments SET parcel = ?, changed_ms = ? WHERE bank = ? AND no = ?",
                (parcel, self.clock(), c.bank, c.no),
            )
            self.touch(tx, c.key)
            return
        self._set_state(tx, c, state, parcel, reason)

    def _set_state(
        self,
        tx: Transaction,
        c: Compartment,
        state: CompartmentState,
        parcel: str | None,
        reason: str | None,
    ) -> None:
        tx.execute(
            "UPDATE compartments SET state = ?, parcel = ?, reason = ?, changed_ms = ?"
            " WHERE bank = ? AND no = ?",
            (state.value, parcel, reason, self.clock(), c.bank, c.no),
        )
        self.touch(tx, c.key)
        out = CompartmentState.OUT_OF_SERVICE
        if (state is out) != (c.state is out):
            data: dict[str, Any] = {"bank": c.bank, "compartment": c.no, "state": state.value}
            if reason is not None:
                data["reason"] = reason
            self._outbox.append(tx, LOCKER_STATE, data)

    def take_out_of_service(
        self,
        tx: Transaction,
        c: Compartment,
        alarm: Alarm,
        reason: str,
        *,
        parcel: str | _Keep | None = _KEEP,
    ) -> None:
        """Take ``c`` out of service for ``reason`` and raise ``alarm`` (once: not if already out).

        The compartment keeps the parcel it holds unless ``parcel`` says otherwise.
        """
        holder = c.parcel if isinstance(parcel, _Keep) else parcel
        if c.state is CompartmentState.OUT_OF_SERVICE:
            if holder != c.parcel:
                self.set_compartment(tx, c, c.state, holder)
            return
        self._set_state(tx, c, CompartmentState.OUT_OF_SERVICE, holder, reason)
        self.alarm(tx, alarm, c.bank, compartment=c.no, board=c.board)
        log.warning("locker.out_of_service", bank=c.bank, compartment=c.no, reason=reason)

    def return_to_service(self, bank: str, no: int) -> CompartmentState:
        """An engineer's ``locker.service``: put an out-of-service compartment back in service.

        It is ``occupied`` if it holds a recorded parcel, ``reserved`` if a deposit is under way,
        else ``free`` (the watch checks the door and sensor on its next pass). Returns the state.
        """
        with self._store.transaction() as tx:
            c = self.get_compartment(tx, (bank, no))
            if c.state is not CompartmentState.OUT_OF_SERVICE:
                return c.state
            parcel = self.get_parcel(tx, c.parcel) if c.parcel else None
            state = CompartmentState.FREE
            holder: str | None = None
            if parcel is not None and parcel.state in HOLDS_CODE:
                state, holder = CompartmentState.OCCUPIED, parcel.id
            elif parcel is not None and parcel.state in IN_DEPOSIT:
                state, holder = CompartmentState.RESERVED, parcel.id
            self._set_state(tx, c, state, holder, None)
        return state

    def insert_parcel(self, tx: Transaction, **fields: Any) -> None:
        """Insert a parcel row (column names as keywords)."""
        unknown = set(fields) - _PARCEL_FIELDS
        if unknown:
            raise ValueError(f"unknown parcel fields {sorted(unknown)}")
        fields.setdefault("changed_ms", self.clock())
        names = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        tx.execute(f"INSERT INTO parcels ({names}) VALUES ({marks})", tuple(fields.values()))  # noqa: S608

    def move_parcel(
        self,
        tx: Transaction,
        parcel_id: str,
        expect: frozenset[ParcelState],
        to: ParcelState,
        **fields: Any,
    ) -> bool:
        """Move a parcel in one of ``expect`` to ``to`` (setting ``fields``); False if it was not.

        A conditional UPDATE: of two moves racing from the same state, exactly one succeeds. The
        parcel's compartment counts as changed (its version is bumped on commit).
        """
        unknown = set(fields) - _PARCEL_FIELDS
        if unknown:
            raise ValueError(f"unknown parcel fields {sorted(unknown)}")
        fields["state"] = to.value
        fields.setdefault("changed_ms", self.clock())
        assignments = ", ".join(f"{name} = ?" for name in fields)
        marks = ", ".join("?" for _ in expect)
        cursor = tx.execute(
            f"UPDATE parcels SET {assignments} WHERE id = ? AND state IN ({marks})",  # noqa: S608
            (*fields.values(), parcel_id, *(s.value for s in expect)),
        )
        if cursor.rowcount != 1:
            return False
        where = tx.execute(
            "SELECT bank, compartment FROM parcels WHERE id = ?", (parcel_id,)
        ).fetchone()
        if where[1] is not None:
            self.touch(tx, (where[0], where[1]))
        return True

    def delete_parcel(self, tx: Transaction, parcel_id: str) -> None:
        """Forget a parcel that never reached a compartment's door (a refused deposit)."""
        tx.execute("DELETE FROM parcels WHERE id = ?", (parcel_id,))

    def alarm(
        self,
        tx: Transaction,
        kind: Alarm,
        bank: str,
        *,
        compartment: int | None = None,
        board: str | None = None,
        cleared: bool = False,
        **extra: Any,
    ) -> None:
        """Append a ``gateway.alarm`` of ``kind`` (``cleared`` when the condition ended)."""
        data: dict[str, Any] = {"kind": kind.value, "bank": bank}
        if compartment is not None:
            data["compartment"] = compartment
        if board is not None:
            data["board"] = board
        if cleared:
            data["cleared"] = True
        data.update(extra)
        self._outbox.append(tx, GATEWAY_ALARM, data)


class CodeLockout:
    """The keypad lockout of each bank: too many wrong codes lock code entry for a while.

    ``attempts`` wrong codes within ``window_ms`` lock the bank's code entry for ``lockout_ms``,
    doubling with each further lockout up to ``max_ms``; a correct code forgets the failures and
    the doubling. Attempts refused during a lockout are not counted. State is in the store, so a
    restart (or a power cut) does not reset it.
    """

    def __init__(self, *, attempts: int, window_ms: int, lockout_ms: int, max_ms: int) -> None:
        self._attempts = attempts
        self._window_ms = window_ms
        self._lockout_ms = lockout_ms
        self._max_ms = max_ms

    def locked_until(self, tx: Transaction, bank: str, now: int) -> int | None:
        """When the bank's current lockout ends, or None if code entry is open."""
        row = tx.execute(
            "SELECT locked_until_ms FROM code_lockouts WHERE bank = ?", (bank,)
        ).fetchone()
        if row is None or row[0] <= now:
            return None
        return int(row[0])

    def failed(self, tx: Transaction, bank: str, now: int) -> int | None:
        """Count a wrong code; if it completes a series, the end of the lockout it starts."""
        tx.execute(
            "DELETE FROM code_failures WHERE bank = ? AND at_ms <= ?", (bank, now - self._window_ms)
        )
        tx.execute("INSERT INTO code_failures (bank, at_ms) VALUES (?, ?)", (bank, now))
        count = tx.execute("SELECT count(*) FROM code_failures WHERE bank = ?", (bank,)).fetchone()
        if count[0] < self._attempts:
            return None
        row = tx.execute("SELECT lockouts FROM code_lockouts WHERE bank = ?", (bank,)).fetchone()
        lockouts = 0 if row is None else int(row[0])
        length = min(self._max_ms, self._lockout_ms << min(lockouts, 32))
        until = now + length
        tx.execute(
            "INSERT INTO code_lockouts (bank, lockouts, locked_until_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (bank) DO UPDATE SET lockouts = excluded.lockouts,"
            " locked_until_ms = excluded.locked_until_ms",
            (bank, lockouts + 1, until),
        )
        tx.execute("DELETE FROM code_failures WHERE bank = ?", (bank,))
        return until

    def succeeded(self, tx: Transaction, bank: str) -> None:
        """A correct code: forget the failures and the lockout history."""
        tx.execute("DELETE FROM code_failures WHERE bank = ?", (bank,))
        tx.execute("DELETE FROM code_lockouts WHERE bank = ?", (bank,))
