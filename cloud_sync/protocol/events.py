"""Events up, acks down.

An :class:`EventBatch` carries events in gateway-sequence order; each event has a globally unique
``id`` (a UUID in hex) and the gateway's ``seq`` (1, 2, 3, … never reused, also across restarts).
The cloud answers with an :class:`Ack` naming the sequence ranges it has durably stored; only that
ack lets the gateway delete events from its outbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from cloud_sync.protocol.errors import SyncProtocolError
from cloud_sync.protocol.wire import (
    MAX_BATCH_BYTES,
    check_id,
    check_int,
    decode_object,
    encode,
)

__all__ = ["MAX_BATCH_EVENTS", "Ack", "Event", "EventBatch", "coalesce_ranges"]

MAX_BATCH_EVENTS = 1000
_MAX_SEQ = (1 << 63) - 1
_EVENT_ID = re.compile(r"[0-9a-f]{32}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){1,3}")
_MAX_EVENT_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened at a site."""

    id: str
    seq: int
    ts: int
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _EVENT_ID.fullmatch(self.id):
            raise SyncProtocolError("event id must be 32 lowercase hex characters")
        check_int(self.seq, "seq", 1, _MAX_SEQ)
        check_int(self.ts, "ts", 0, _MAX_SEQ)
        if not isinstance(self.type, str) or not _EVENT_TYPE.fullmatch(self.type):
            raise SyncProtocolError(f"bad event type {self.type!r}")
        if not isinstance(self.data, dict):
            raise SyncProtocolError("event data must be an object")

    def to_obj(self) -> dict[str, Any]:
        """The JSON object form."""
        return {"id": self.id, "seq": self.seq, "ts": self.ts, "type": self.type, "data": self.data}

    @classmethod
    def from_obj(cls, obj: Any) -> Event:
        """Validate one event object."""
        if not isinstance(obj, dict):
            raise SyncProtocolError("an event is an object")
        data = obj.get("data", {})
        if len(encode({"d": data})) > _MAX_EVENT_BYTES:
            raise SyncProtocolError("event data too large")
        return cls(
            id=obj.get("id"),  # type: ignore[arg-type]  # validated in __post_init__
            seq=obj.get("seq"),  # type: ignore[arg-type]
            ts=obj.get("ts"),  # type: ignore[arg-type]
            type=obj.get("type"),  # type: ignore[arg-type]
            data=data,
        )


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events of one gateway in ascending sequence order."""

    gateway: str
    events: tuple[Event, ...]

    def __post_init__(self) -> None:
        check_id(self.gateway, "gateway")
        if not 1 <= len(self.events) <= MAX_BATCH_EVENTS:
            raise SyncProtocolError(f"a batch holds 1..{MAX_BATCH_EVENTS} events")
        seqs = [e.seq for e in self.events]
        if any(b <= a for a, b in pairwise(seqs)):
            raise SyncProtocolError("batch sequence numbers must ascend")

    def encode(self) -> bytes:
        """Wire bytes."""
        return encode({"v": 1, "gw": self.gateway, "events": [e.to_obj() for e in self.events]})

    @classmethod
    def decode(cls, data: bytes) -> EventBatch:
        """Parse wire bytes."""
        obj = decode_object(data, MAX_BATCH_BYTES)
        if obj.get("v") != 1:
            raise SyncProtocolError("unsupported batch version")
        events = obj.get("events")
        if not isinstance(events, list):
            raise SyncProtocolError("events must be a list")
        return cls(gateway=obj.get("gw"), events=tuple(Event.from_obj(e) for e in events))  # type: ignore[arg-type]


def coalesce_ranges(seqs: list[int]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged inclusive ranges covering ``seqs``."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return tuple((a, b) for a, b in out)


@dataclass(frozen=True, slots=True)
class Ack:
    """The cloud has durably stored the events whose sequence numbers fall in ``ranges``."""

    ranges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.ranges) <= MAX_BATCH_EVENTS:
            raise SyncProtocolError("an ack names 1..1000 ranges")
        for lo, hi in self.ranges:
            check_int(lo, "range start", 1, _MAX_SEQ)
            check_int(hi, "range end", lo, _MAX_SEQ)

    def covers(self, seq: int) -> bool:
        """Whether ``seq`` is acknowledged."""
        return any(lo <= seq <= hi for lo, hi in self.ranges)

    def encode(self) -> bytes:
        """Wire bytes."""
        return encode({"v": 1, "acked": [list(r) for r in self.ranges]})

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        """Parse wire bytes."""
        obj = decode_object(data, 64 * 1024)
        if obj.get("v") != 1:
            raise SyncProtocolError("unsupported ack version")
        ranges = obj.get("acked")
        if not isinstance(ranges, list) or not all(
            isinstance(r, list) and len(r) == 2 for r in ranges
        ):
            raise SyncProtocolError("acked must be a list of [lo, hi] pairs")
        return cls(tuple((r[0], r[1]) for r in ranges))
