"""The contract between the simulated bus and the device families that sit on it.

A device family (DL/T 645, Modbus RTU, CJ/T 188, lock boards, ...) provides two things:

* a :class:`RequestFramer` that cuts the master's byte stream into complete request frames — the
  bus cannot know where one family's frame ends, so the family that owns the codec decides;
* one :class:`BusDevice` per simulated device, which answers the frames addressed to it.

Both are structural (:class:`typing.Protocol`), so families implement them without importing this
module's classes. Two optional extras, looked up by name when present:

* a framer's ``reset() -> None`` is called when a new master connects, so half a frame left by the
  previous one is not glued to the newcomer's bytes;
* a device's ``checksum_offset: int`` says where its frames keep the checksum byte, counted from
  the end, for the ``BAD_CHECKSUM`` fault (default ``-1``; DL/T 645 and CJ/T 188 frames end
  ``CS 16``, so theirs is ``-2``).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BusDevice", "RequestFramer"]


class RequestFramer(Protocol):
    """Splits the bytes a master sends into complete request frames, skipping garbage.

    It keeps any incomplete tail between calls and hunts for the next good frame after noise, as a
    real slave's receiver does.
    """

    def feed(self, data: bytes) -> list[bytes]:
        """Take newly received bytes; return every request frame now complete, in order."""
        ...


class BusDevice(Protocol):
    """A simulated device on the bus."""

    # Read-only in the protocol so that a plain attribute, a property and a frozen dataclass field
    # all satisfy it (a settable protocol member would reject the last two under mypy).
    @property
    def address(self) -> str:
        """A label for statistics and faults, e.g. ``"001500076004"``, ``"modbus:1"``."""
        ...

    def respond(self, request: bytes, now: float) -> bytes | None:
        """Return the raw reply to ``request``, or ``None`` to stay silent.

        Silence is the answer to a frame addressed to another device, or to a broadcast. ``now`` is
        :func:`time.monotonic`; devices use it to advance their registers over time.
        """
        ...
