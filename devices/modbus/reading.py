"""Reading values by name: the fewest read requests that cover them, and decoding the replies.

On a 2400-baud bus every request costs a turnaround and ~30 ms of header and CRC, so a poller
asks for as few blocks as it can. A block is one FC03/FC04 read of at most 125 registers. Wanted
entries in the same table join one block when everything between them is readable: by default
only registers the map defines, because many devices refuse a read that touches an undefined
register (exception 02). ``max_gap`` allows a block to span that many undefined registers in a
row, for a device known to answer them.

Taking wanted entries in address order and growing each block while it can still grow is
optimal here: any block of a plan that covers the entries can be shrunk to a run of consecutive
wanted entries, and a run that fits stays valid when it loses entries at either end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from devices.modbus.codes import MAX_READ_COUNT, FunctionCode
from devices.modbus.errors import ExceptionReplyError, ModbusError
from devices.modbus.frames import ExceptionReply, ReadReply, ReadRequest, Reply
from devices.modbus.registers import RegisterEntry, RegisterMap

__all__ = ["ReadBlock", "plan_reads"]


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request's worth of registers, and the wanted entries inside it."""

    function: FunctionCode
    address: int
    count: int
    entries: tuple[RegisterEntry, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_READ_COUNT:
            raise ValueError(f"a block reads 1–{MAX_READ_COUNT} registers, not {self.count}")
        for entry in self.entries:
            if entry.function != self.function or not (
                self.address <= entry.address and entry.end <= self.address + self.count
            ):
                raise ValueError(f"{entry.name} is not inside the block")

    def request(self, unit: int) -> ReadRequest:
        """The request that reads this block from ``unit``."""
        return ReadRequest(unit, self.function, self.address, self.count)

    def decode(self, reply: Reply) -> dict[str, Decimal]:
        """The wanted values in ``reply``, by entry name.

        Raises `ExceptionReplyError` if the device refused the read, and `ModbusError` if the
        reply is not a read of this block.
        """
        if isinstance(reply, ExceptionReply):
            raise ExceptionReplyError(reply.unit, reply.function, reply.code)
        if (
            not isinstance(reply, ReadReply)
            or reply.function != self.function
            or len(reply.values) != self.count
        ):
            raise ModbusError(f"{reply} does not answer a read of {self.count} registers")
        values = reply.values
        return {
            entry.name: entry.decode(
                values[entry.address - self.address : entry.end - self.address]
            )
            for entry in self.entries
        }


def _undefined_run(register_map: RegisterMap, function: int, start: int, end: int) -> int:
    """The longest run of registers in ``[start, end)`` that no entry defines."""
    longest = run = 0
    for address in range(start, end):
        run = 0 if register_map.at(function, address) is not None else run + 1
        longest = max(longest, run)
    return longest


def plan_reads(
    register_map: RegisterMap,
    names: Iterable[str] | None = None,
    *,
    max_gap: int = 0,
    max_count: int = MAX_READ_COUNT,
) -> tuple[ReadBlock, ...]:
    """The fewest blocks that read ``names`` (every entry when None), holding registers first.

    Raises KeyError for a name the map does not have.
    """
    if not 1 <= max_count <= MAX_READ_COUNT:
        raise ValueError(f"max_count must be 1–{MAX_READ_COUNT}")
    if max_gap < 0:
        raise ValueError("max_gap cannot be negative")
    wanted = (
        register_map.entries
        if names is None
        else tuple(dict.fromkeys(register_map[name] for name in names))
    )
    blocks: list[ReadBlock] = []
    for function in (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS):
        run: list[RegisterEntry] = []
        for entry in sorted((e for e in wanted if e.function == function), key=lambda e: e.address):
            if run and (
                entry.end - run[0].address > max_count
                or _undefined_run(register_map, function, run[-1].end, entry.address) > max_gap
            ):
                blocks.append(_block(run))
                run = []
            run.append(entry)
        if run:
            blocks.append(_block(run))
    return tuple(blocks)


def _block(run: list[RegisterEntry]) -> ReadBlock:
    first = run[0]
    return ReadBlock(first.function, first.address, run[-1].end - first.address, tuple(run))
