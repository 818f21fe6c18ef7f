"""What the bus owner carries out: an :class:`Exchange` (one request and its reply).

An exchange is protocol-neutral. The driver that builds it knows the protocol and supplies the
request bytes, a factory for a fresh reply decoder (the codec's stream decoder behind the small
:class:`ReplyDecoder` face), and ``accept``: the predicate "this frame answers my request" (right
address, right function, right identifier). The owner adds the rest — who goes first
(:class:`Priority`), how long to wait, how often to try — and never looks inside a frame.

A fresh decoder per attempt is deliberate: half a frame left by a device that gave up must never
be glued to the next device's reply, and the decoder's counters then belong to one device.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Attempt", "Exchange", "Outcome", "Priority", "ReplyDecoder", "ReplyMode"]


class Priority(enum.IntEnum):
    """Who goes first on a bus: lower values first, FIFO within one value."""

    COMMAND = 0
    """Door and locker commands: a person is standing in front of the device."""
    ON_DEMAND = 1
    """Reads someone asked for now (a ``meter.read`` command, an engineer's console)."""
    POLL = 2
    """Scheduled reads: they can always wait for the above."""


class ReplyMode(enum.Enum):
    """What the request expects back."""

    REQUIRED = "required"
    """A reply must come; silence is a failure (reads, queries)."""
    OPTIONAL = "optional"
    """A reply may come and is taken if it does; silence is no failure (a lock board's 31H open,
    which some firmware answers and some does not)."""
    NONE = "none"
    """Nobody answers (broadcasts such as a DL/T 645 time sync): send and move on."""


class ReplyDecoder(Protocol):
    """The face of a codec's stream decoder that the bus owner needs.

    ``feed`` never raises on line noise: garbage is skipped and counted. ``idle`` is called when
    the line went quiet with bytes still held (some framings cannot tell a stray start byte from a
    frame's beginning until then); ``reset`` drops whatever is held.
    """

    def feed(self, data: bytes) -> list[object]:
        """Take received bytes; return every frame they complete."""
        ...

    def idle(self) -> list[object]:
        """The line is quiet: give up on a partial frame, return what hunting its bytes finds."""
        ...

    def reset(self) -> None:
        """Drop a partial frame (after a timeout its rest is not coming)."""
        ...

    @property
    def checksum_errors(self) -> int:
        """Frame-shaped candidates dropped for a bad checksum/CRC so far."""
        ...

    @property
    def garbage_bytes(self) -> int:
        """Bytes dropped as noise so far (preamble bytes are not noise)."""
        ...


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to one device and how to recognise its reply.

    ``timeout_s`` runs from the moment the request has left the wire to the last byte of the
    reply. ``retries`` more attempts follow a failed one. ``deadline`` (``time.monotonic``) is
    when waiting in the queue stops making sense: a scheduled read due again, a person who gave up.
    """

    device: str
    request: bytes
    decoder: Callable[[], ReplyDecoder]
    accept: Callable[[object], bool]
    timeout_s: float
    retries: int = 1
    priority: Priority = Priority.POLL
    reply: ReplyMode = ReplyMode.REQUIRED
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not self.request:
            raise ValueError("an exchange sends at least one byte")
        if self.timeout_s <= 0 or self.retries < 0:
            raise ValueError("timeout_s must be positive and retries not negative")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the port did with one attempt of an exchange (built on the worker thread)."""

    frame: object | None
    """The accepted reply, or None (silence, or only frames that did not answer)."""
    latency_s: float
    """From the first request byte written to the accepted reply (or to giving up)."""
    checksum_errors: int
    garbage_bytes: int
    other_frames: int
    """Valid frames that did not answer this request (a late reply of another device)."""
    request_bytes: int
    reply_bytes: int
    """Bytes received during the attempt, noise included."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of a whole exchange, as handed back to whoever submitted it."""

    frame: object | None
    """The reply (None for ``ReplyMode.NONE``, or an unanswered ``OPTIONAL``)."""
    attempts: int
    latency_s: float
