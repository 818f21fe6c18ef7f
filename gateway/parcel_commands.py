"""Signed parcel commands → the parcel flows, with their lifecycle reported through the command log.

The five actions of docs/parcels.md "Commands", each targeting a locker bank by id:

==================  =========================================================  ================
action              args                                                       success
==================  =========================================================  ================
``parcel.deposit``  ``parcel``, ``size``, ``unit``, ``courier``, ``company``?  ``opened``
``parcel.reopen``   ``parcel``                                                 ``opened``
``parcel.cancel``   ``parcel``                                                 ``completed``
``parcel.pickup``   ``parcel``                                                 ``opened``
``parcel.retrieve`` ``parcel``, ``courier``                                    ``opened``
==================  =========================================================  ================

A command arrives recorded ``sent`` (the replay guard committed it). Arguments are checked
strictly first — ``parcel`` 32 lowercase hex, ``size`` one of ``mini``/``S``/``M``/``L``,
``unit`` a printable label of 1..40 characters, ``courier`` a positive integer account id,
``company`` printable, 1..64 characters, and nothing else — and a command that fails them ends
``failed``/``bad_args`` without touching a lock. Otherwise it is ``acknowledged``, the flow runs,
and it ends ``opened`` (the hook read back open; ``completed`` for a cancel, which opens nothing),
committed in the same transaction as the flow's own record and events, or ``failed`` with the
flow's refusal (:class:`gateway.parcels.Refusal`) as the reason. ``interrupted`` if the gateway
stops meanwhile, ``internal_error`` for a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, get_args

import structlog

from cloud_sync.protocol import CommandBody, CommandStatus
from gateway.command_log import CommandLog
from gateway.parcels import PARCEL_ID, DepositRequest, ParcelRefused, Parcels, Record
from gateway.settings import CompartmentSize
from gateway.store import Transaction

__all__ = ["PARCEL_ACTIONS", "BadArgs", "ParcelCommands", "deposit_request"]

log = structlog.get_logger(__name__)

PARCEL_ACTIONS: Final = (
    "parcel.deposit",
    "parcel.reopen",
    "parcel.cancel",
    "parcel.pickup",
    "parcel.retrieve",
)

_SIZES: Final = frozenset(get_args(CompartmentSize))
_MAX_UNIT: Final = 40
_MAX_COMPANY: Final = 64
_MAX_ACCOUNT: Final = (1 << 63) - 1

Handler = Callable[[CommandBody], Awaitable[None]]
_Work = Callable[[Mapping[str, int | str], Record], Awaitable[object]]


class BadArgs(ValueError):
    """A parcel command's arguments are not what its action takes."""


def _only(
    args: Mapping[str, int | str], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    missing = required - set(args)
    unknown = set(args) - required - optional
    if missing or unknown:
        raise BadArgs(f"missing {sorted(missing)}, unknown {sorted(unknown)}")


def _parcel(args: Mapping[str, int | str]) -> str:
    value = args["parcel"]
    if not isinstance(value, str) or not PARCEL_ID.fullmatch(value):
        raise BadArgs("parcel must be 32 lowercase hex characters")
    return value


def _text(args: Mapping[str, int | str], name: str, limit: int) -> str:
    value = args[name]
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isprintable():
        raise BadArgs(f"{name} must be printable text of 1..{limit} characters")
    if value.strip() != value:
        raise BadArgs(f"{name} must not start or end with spaces")
    return value


def _account(args: Mapping[str, int | str], name: str) -> int:
    value = args[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ACCOUNT:
        raise BadArgs(f"{name} must be a positive integer account id")
    return value


def _size(args: Mapping[str, int | str]) -> CompartmentSize:
    value = args["size"]
    if value not in _SIZES:
        raise BadArgs(f"size must be one of {sorted(_SIZES)}")
    return value  # type: ignore[return-value]  # checked against the Literal's values


def deposit_request(bank: str, args: Mapping[str, int | str]) -> DepositRequest:
    """The deposit a ``parcel.deposit`` command asks for; :class:`BadArgs` if malformed."""
    _only(args, {"parcel", "size", "unit", "courier"}, frozenset({"company"}))
    return DepositRequest(
        bank=bank,
        parcel=_parcel(args),
        size=_size(args),
        unit=_text(args, "unit", _MAX_UNIT),
        courier=_account(args, "courier"),
        company=_text(args, "company", _MAX_COMPANY) if "company" in args else None,
        via="command",
    )


class ParcelCommands:
    """Handlers for the parcel actions, for the gateway's command dispatch."""

    def __init__(self, parcels: Parcels, commands: CommandLog) -> None:
        self._parcels = parcels
        self._log = commands

    def handlers(self) -> dict[str, Handler]:
        """``action → handler(body)`` for every parcel action."""
        return {
            "parcel.deposit": self.deposit,
            "parcel.reopen": self.reopen,
            "parcel.cancel": self.cancel,
            "parcel.pickup": self.pickup,
            "parcel.retrieve": self.retrieve,
        }

    async def deposit(self, body: CommandBody) -> None:
        """``parcel.deposit``: allocate and open a compartment for the courier."""

        def check() -> None:
            deposit_request(body.target, body.args)

        async def work(args: Mapping[str, int | str], record: Record) -> object:
            return await self._parcels.deposit(deposit_request(body.target, args), record=record)

        await self._run(body, check, work, CommandStatus.OPENED)

    async def reopen(self, body: CommandBody) -> None:
        """``parcel.reopen``: open a waiting deposit's compartment again."""

        def check() -> None:
            _only(body.args, {"parcel"})
            _parcel(body.args)

        async def work(args: Mapping[str, int | str], record: Record) -> object:
            return await self._parcels.reopen(body.target, _parcel(args), record=record)

        await self._run(body, check, work, CommandStatus.OPENED)

    async def cancel(self, body: CommandBody) -> None:
        """``parcel.cancel``: cancel a deposit waiting for its courier (opens nothing)."""

        def check() -> None:
            _only(body.args, {"parcel"})
            _parcel(body.args)

        async def work(args: Mapping[str, int | str], record: Record) -> object:
            self._parcels.cancel(body.target, _parcel(args), "courier", record=record)
            return None

        await self._run(body, check, work, CommandStatus.COMPLETED)

    async def pickup(self, body: CommandBody) -> None:
        """``parcel.pickup``: open a parcel's compartment for its recipient (remote)."""

        def check() -> None:
            _only(body.args, {"parcel"})
            _parcel(body.args)

        async def work(args: Mapping[str, int | str], record: Record) -> object:
            return await self._parcels.pickup(body.target, _parcel(args), "remote", record=record)

        await self._run(body, check, work, CommandStatus.OPENED)

    async def retrieve(self, body: CommandBody) -> None:
        """``parcel.retrieve``: open an overdue parcel's compartment for its courier."""

        def check() -> None:
            _only(body.args, {"parcel", "courier"})
            _parcel(body.args)
            _account(body.args, "courier")

        async def work(args: Mapping[str, int | str], record: Record) -> object:
            return await self._parcels.retrieve(
                body.target, _parcel(args), _account(args, "courier"), record=record
            )

        await self._run(body, check, work, CommandStatus.OPENED)

    async def _run(
        self,
        body: CommandBody,
        check: Callable[[], None],
        work: _Work,
        success: CommandStatus,
    ) -> None:
        try:
            check()
        except BadArgs as exc:
            log.warning("parcel.bad_args", command=body.id, action=body.action, error=str(exc))
            self._log.advance(body.id, CommandStatus.FAILED, "bad_args")
            return
        self._log.advance(body.id, CommandStatus.ACKNOWLEDGED)

        def record(tx: Transaction) -> None:
            self._log.advance_in(tx, body.id, success)

        try:
            await work(body.args, record)
        except ParcelRefused as refusal:
            log.info("parcel.refused", command=body.id, action=body.action, reason=refusal.reason)
            self._log.advance(body.id, CommandStatus.FAILED, refusal.reason.value)
        except asyncio.CancelledError:
            self._finish_failed(body.id, "interrupted")
            raise
        except Exception:
            log.exception("parcel.command_crashed", command=body.id, action=body.action)
            self._finish_failed(body.id, "internal_error")
        else:
            log.info("parcel.command_done", command=body.id, action=body.action)

    def _finish_failed(self, command_id: str, reason: str) -> None:
        """Fail a command unless its outcome was already recorded."""
        if self._log.status(command_id) is CommandStatus.ACKNOWLEDGED:
            self._log.advance(command_id, CommandStatus.FAILED, reason)
