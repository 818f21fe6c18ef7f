"""The locker watch: reads every lock board at a steady pace and acts on what the doors say.

A supervised loop (:meth:`LockerWatch.run`) reads each board that carries a configured compartment
every ``watch_interval_s`` with a 30H at :attr:`~gateway.bus_exchange.Priority.POLL` (behind every
locker command and on-demand read), and compares each compartment's hook and infrared bits with
what the store says (:mod:`gateway.locker_banks`):

============================  ==================================================================
stored                        door latched + infrared → action
============================  ==================================================================
deposit, door open            closed + something: ``parcel.deposited`` (code chosen);
                              closed + nothing: ``parcel.deposit_empty``
deposit ``empty``             something sensed: deposited; door open: ``locker_forced``;
                              left longer than ``deposit_timeout_s``: cancelled (``timeout``)
``occupied``                  door open: ``locker_forced``; nothing sensed: mismatch
being cleared (after pickup,  closed + nothing: ``free``; closed + something: mismatch
retrieval, cancel)
``free``                      door open: ``locker_forced``; something sensed: mismatch
``out_of_service``            nothing (an engineer's business)
============================  ==================================================================

``locker_forced`` and ``locker_sensor_mismatch`` take the compartment out of service. A door
open longer than ``left_open_s`` after a legitimate open (for the courier, the recipient, or a
clearing) raises ``locker_left_open`` once; when it closes, the same alarm is sent again with
``cleared: true``. A board whose read fails (after the exchange's retries) is offline:
``lockboard_offline`` once, its compartments are not allocated, and the alarm is cleared
(``cleared: true``) when it answers again.

Readings race with the flows: a flow marks the compartment it opens busy, and every committed
change bumps the compartment's version. The watch notes the versions before it asks a board and
ignores a compartment that was busy or changed meanwhile, so it never acts on a reading older than
the state it would change.

The first successful read of each board after start-up is its **reconciliation**: the same rules,
plus the resolution of what an earlier run left half done — a deposit whose door was being opened
(``reserved``: door open → waiting for the courier, ``parcel.opened``; closed with something
inside → deposited; closed and empty → ``deposit_empty``) and a pickup whose claim was committed
but whose open was not recorded (``opening``: door open, or closed and empty → picked up with the
fee fixed at the claim; closed with the parcel sensed → back to ``occupied``). If anything changed,
one ``locker_reconciled`` alarm per bank lists the compartments (``compartments: [no, …]``).
"""

from __future__ import annotations

import asyncio

import structlog

from devices.lockboard import BoardStatus
from gateway.bus_errors import BusError, UnknownDeviceError
from gateway.bus_exchange import Priority
from gateway.locker_banks import (
    FINISHED,
    Alarm,
    Compartment,
    CompartmentKey,
    CompartmentState,
    LockerBanks,
    Parcel,
    ParcelState,
)
from gateway.lockers import Lockers
from gateway.parcels import Parcels
from gateway.settings import ParcelRules

__all__ = ["LockerWatch"]

log = structlog.get_logger(__name__)

_MIN_READ_WITHIN_S = 5.0


class LockerWatch:
    """Polls the lock boards and keeps the stored compartments true to them (module doc)."""

    def __init__(
        self, rules: ParcelRules, banks: LockerBanks, parcels: Parcels, lockers: Lockers
    ) -> None:
        self._rules = rules
        self._banks = banks
        self._parcels = parcels
        self._lockers = lockers
        self._open_since: dict[CompartmentKey, int] = {}
        self._left_open: set[CompartmentKey] = set()
        self._reconciled: set[str] = set()
        self.passes = 0
        """Completed passes over every board (tests wait on it)."""

    async def run(self) -> None:
        """Watch forever (a supervised task): a pass over every board, then the interval."""
        while True:
            await self.poll()
            await asyncio.sleep(self._rules.watch_interval_s)

    async def poll(self) -> None:
        """One pass: read every board (concurrently; each bus serialises its own) and act."""
        boards = self._banks.boards()
        await asyncio.gather(*(self._watch_board(board) for board in boards))
        self._expire_deposits()
        self.passes += 1

    async def _watch_board(self, board: str) -> None:
        versions = {c.key: self._banks.version(c.key) for c in self._banks.on_board(board)}
        within = max(_MIN_READ_WITHIN_S, 2 * self._rules.watch_interval_s)
        try:
            status = await self._lockers.status(board, priority=Priority.POLL, within_s=within)
        except (BusError, UnknownDeviceError) as exc:
            if self._banks.board_online(board) is not False:
                log.warning("locker.board_read_failed", board=board, error=str(exc))
            self._banks.mark_board(board, False)
            return
        self._banks.mark_board(board, True)
        reconciling = board not in self._reconciled
        changed: dict[str, list[int]] = {}
        for c in self._banks.on_board(board):
            if self._banks.is_busy(c.key) or self._banks.version(c.key) != versions.get(c.key):
                continue  # a flow is at it, or it changed while the board was being read
            if self._check(c, status) and reconciling and versions.get(c.key) == 0:
                # Untouched in this run: what changed was left by an earlier one.
                changed.setdefault(c.bank, []).append(c.no)
        if reconciling:
            self._reconciled.add(board)
            if changed:
                with self._banks.store.transaction() as tx:
                    for bank, numbers in changed.items():
                        self._banks.alarm(
                            tx, Alarm.RECONCILED, bank, board=board, compartments=numbers
                        )
                log.warning("locker.reconciled", board=board, changed=changed)

    # -- one compartment ---------------------------------------------------------------------

    def _check(self, c: Compartment, status: BoardStatus) -> bool:
        """Act on one compartment's reading; whether its stored state changed."""
        closed = status.hook_closed(c.lock)
        sensed = status.occupied(c.lock)
        parcel = self._banks.parcel(c.parcel) if c.parcel is not None else None
        self._track_door(c, closed, parcel)
        if c.state is CompartmentState.OUT_OF_SERVICE:
            return False
        if c.state is CompartmentState.FREE:
            if not closed:
                return self._fault(c, Alarm.FORCED, "forced")
            if sensed:
                return self._fault(c, Alarm.SENSOR_MISMATCH, "sensor_mismatch")
            return False
        if parcel is None or parcel.state in FINISHED or parcel.compartment != c.no:
            # Being cleared after a pickup, retrieval or cancel.
            if not closed:
                return False
            if sensed:
                return self._fault(c, Alarm.SENSOR_MISMATCH, "sensor_mismatch")
            with self._banks.store.transaction() as tx:
                current = self._banks.get_compartment(tx, c.key)
                self._banks.set_compartment(tx, current, CompartmentState.FREE, None)
            log.info("locker.cleared", bank=c.bank, compartment=c.no)
            return True
        state = parcel.state
        if state is ParcelState.OCCUPIED:
            if not closed:
                return self._fault(c, Alarm.FORCED, "forced")
            if not sensed:
                return self._fault(c, Alarm.SENSOR_MISMATCH, "sensor_mismatch")
            return False
        if state is ParcelState.EMPTY and not closed:
            return self._fault(c, Alarm.FORCED, "forced")
        if state is ParcelState.OPENING:
            # Claimed by an earlier run (a live claim keeps the compartment busy).
            with self._banks.store.transaction() as tx:
                self._parcels.resolve_claim(tx, parcel, c, opened=not closed or not sensed)
            return True
        if not closed:
            if state is not ParcelState.RESERVED:
                return False  # open for the courier
            with self._banks.store.transaction() as tx:  # opened by an earlier run
                self._parcels.door_found_open(tx, parcel, c)
            return True
        if not sensed and state is ParcelState.EMPTY:
            return False  # waiting for the courier's retry or cancel
        with self._banks.store.transaction() as tx:
            if sensed:
                self._parcels.deposited(tx, parcel, c)
            else:
                self._parcels.deposit_empty(tx, parcel, c)
        return True

    def _fault(self, c: Compartment, alarm: Alarm, reason: str) -> bool:
        """Take ``c`` out of service with ``alarm``."""
        with self._banks.store.transaction() as tx:
            current = self._banks.get_compartment(tx, c.key)
            self._banks.take_out_of_service(tx, current, alarm, reason)
        return True

    def _track_door(self, c: Compartment, closed: bool, parcel: Parcel | None) -> None:
        """The left-open alarm: raised once per opening, cleared when the door closes."""
        key = c.key
        if closed:
            self._open_since.pop(key, None)
            if key in self._left_open:
                self._left_open.discard(key)
                with self._banks.store.transaction() as tx:
                    self._banks.alarm(
                        tx, Alarm.LEFT_OPEN, c.bank, compartment=c.no, board=c.board, cleared=True
                    )
                log.info("locker.closed_again", bank=c.bank, compartment=c.no)
            return
        if c.state in (CompartmentState.FREE, CompartmentState.OUT_OF_SERVICE):
            return  # not a legitimate open: forced, or an engineer's business
        if (
            parcel is not None
            and parcel.compartment == c.no
            and parcel.state in (ParcelState.OCCUPIED, ParcelState.EMPTY)
        ):
            return  # forced (no open was commanded): the last real open may be long ago
        now = self._banks.clock()
        since = self._open_since.setdefault(key, self._banks.opened_at(key) or now)
        if key not in self._left_open and now - since >= self._rules.left_open_s * 1000:
            self._left_open.add(key)
            with self._banks.store.transaction() as tx:
                self._banks.alarm(tx, Alarm.LEFT_OPEN, c.bank, compartment=c.no, board=c.board)
            log.warning("locker.left_open", bank=c.bank, compartment=c.no)

    def _expire_deposits(self) -> None:
        """Cancel deposits left ``empty`` longer than ``deposit_timeout_s``."""
        cutoff = self._banks.clock() - self._rules.deposit_timeout_s * 1000
        for bank in self._banks.bank_ids():
            for parcel in self._banks.parcels(bank, frozenset({ParcelState.EMPTY})):
                if parcel.changed_ms > cutoff:
                    continue
                key = (bank, parcel.compartment or 0)
                if self._banks.is_busy(key):
                    continue
                with self._banks.store.transaction() as tx:
                    current = self._banks.get_parcel(tx, parcel.id)
                    if current is not None and current.state is ParcelState.EMPTY:
                        self._parcels.expire(tx, current)
