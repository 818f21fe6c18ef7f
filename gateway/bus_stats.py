"""Per-device statistics on a bus, and the one place a device becomes online or offline.

Home Assistant's coordinator rule, applied to RS-485: a device's failures are translated into
"unavailable" here and nowhere else, and a transition is reported once — when the device goes
down and when it comes back — never on every failed poll. The rules:

* an exchange *fails* when no accepted reply came after all its attempts (one failure per
  exchange, not per attempt, so retries do not make a device look worse than it is);
* ``offline_after`` consecutive failed exchanges make an online (or never-heard) device offline;
* the next accepted reply — including a refusal such as DL/T 645's ERR frame, which proves the
  device is there — makes it online again;
* a device starts unknown; its first reply (or its first ``offline_after`` failures) is reported
  as a transition too, because the cloud needs the initial state.

Counters are plain integers owned by the event loop (the owner updates them after each attempt
comes back from the worker thread), read by health and metrics through :meth:`snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.bus_exchange import Attempt

__all__ = ["DeviceSnapshot", "DeviceStats"]

_EWMA_WEIGHT: Final = 0.2  # the newest latency's share: smooth, yet follows a change in ~10 reads


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One device's statistics at one moment (what health, metrics and events see)."""

    device: str
    bus: str
    online: bool | None
    """None until the device has answered or failed enough to tell."""
    requests: int
    """Attempts sent (each retry counts)."""
    replies: int
    """Accepted replies."""
    timeouts: int
    """Attempts that ended without an accepted reply."""
    failures: int
    """Exchanges that failed after every retry."""
    checksum_errors: int
    garbage_bytes: int
    latency_last_ms: float | None
    latency_ewma_ms: float | None
    latency_max_ms: float | None
    last_seen_ms: int | None
    """Wall-clock time of the last accepted reply."""
    consecutive_failures: int


class DeviceStats:
    """The running statistics and online state of one device."""

    def __init__(self, device: str, bus: str, offline_after: int) -> None:
        if offline_after < 1:
            raise ValueError("offline_after must be at least 1")
        self.device = device
        self.bus = bus
        self._offline_after = offline_after
        self.online: bool | None = None
        self.requests = self.replies = self.timeouts = self.failures = 0
        self.checksum_errors = self.garbage_bytes = 0
        self.latency_last: float | None = None
        self.latency_ewma: float | None = None
        self.latency_max: float | None = None
        self.last_seen_ms: int | None = None
        self.consecutive_failures = 0

    def attempted(self, attempt: Attempt, *, answered: bool, expected: bool = True) -> None:
        """Count one attempt; ``answered``: it brought an accepted reply; ``expected``: silence
        would be a timeout (not so for broadcasts and optional replies)."""
        self.requests += 1
        self.checksum_errors += attempt.checksum_errors
        self.garbage_bytes += attempt.garbage_bytes
        if answered:
            self.replies += 1
            latency = attempt.latency_s
            self.latency_last = latency
            self.latency_max = (
                latency if self.latency_max is None else max(self.latency_max, latency)
            )
            self.latency_ewma = (
                latency
                if self.latency_ewma is None
                else self.latency_ewma + _EWMA_WEIGHT * (latency - self.latency_ewma)
            )
        elif expected:
            self.timeouts += 1

    def succeeded(self, wall_ms: int) -> bool | None:
        """The exchange got its reply; returns the new state if this is a transition."""
        self.last_seen_ms = wall_ms
        self.consecutive_failures = 0
        if self.online is True:
            return None
        self.online = True
        return True

    def failed(self) -> bool | None:
        """The exchange failed after every attempt; returns False if the device just went down."""
        self.failures += 1
        self.consecutive_failures += 1
        if self.online is False or self.consecutive_failures < self._offline_after:
            return None
        self.online = False
        return False

    def snapshot(self) -> DeviceSnapshot:
        """A frozen copy for readers."""

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000.0, 3)

        return DeviceSnapshot(
            device=self.device,
            bus=self.bus,
            online=self.online,
            requests=self.requests,
            replies=self.replies,
            timeouts=self.timeouts,
            failures=self.failures,
            checksum_errors=self.checksum_errors,
            garbage_bytes=self.garbage_bytes,
            latency_last_ms=ms(self.latency_last),
            latency_ewma_ms=ms(self.latency_ewma),
            latency_max_ms=ms(self.latency_max),
            last_seen_ms=self.last_seen_ms,
            consecutive_failures=self.consecutive_failures,
        )
