"""Login rate limiting: a sliding window of failures per login and per client address.

After ``max_failures`` failed logins within ``window_s`` seconds, further attempts for that login
(or from that address) are refused with 429 until the oldest of those failures leaves the window —
whether or not the password is right, so a guesser learns nothing from a locked account.

**In-process limitation.** The windows live in this process's memory: with N service instances
behind a load balancer an attacker gets up to N times the attempts, and a restart forgets them.
That still bounds online guessing (each attempt also costs an Argon2 verification, ~120 ms), but the
plan is to move the counters to a shared store — a ``login_failures`` table on PostgreSQL (one
``INSERT`` per failure, ``count(*)`` over the window, purged by the sweeper) or Redis sorted sets —
behind this same interface, once the service runs as more than one instance.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["LoginLimiter", "SlidingWindow"]


class SlidingWindow:
    """Counts failures per key over the last ``window_s`` seconds."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures >= 1 and window_s > 0")
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        # Only the newest max_failures timestamps matter: the key is blocked iff the oldest of
        # them is still inside the window. The deque's maxlen keeps memory per key constant.
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it is not blocked."""
        times = self._failures.get(key)
        if times is None or len(times) < self.max_failures:
            return None
        wait = times[0] + self.window_s - self._clock()
        return wait if wait > 0 else None

    def record_failure(self, key: str) -> None:
        """Count one failure for ``key`` now."""
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self._max_keys:
                self._evict()
            times = self._failures[key] = deque(maxlen=self.max_failures)
        times.append(self._clock())

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (after a successful login)."""
        self._failures.pop(key, None)

    def _evict(self) -> None:
        # Bounded memory under a spray of distinct keys: drop keys whose newest failure has left
        # the window, and if that frees nothing, the oldest-inserted half.
        now = self._clock()
        stale = [k for k, t in self._failures.items() if not t or t[-1] + self.window_s <= now]
        for k in stale:
            del self._failures[k]
        if len(self._failures) >= self._max_keys:
            for k in list(self._failures)[: self._max_keys // 2]:
                del self._failures[k]


class LoginLimiter:
    """The two windows a login attempt is checked against: its login name and its address."""

    def __init__(
        self,
        *,
        per_login: int,
        per_ip: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.by_login = SlidingWindow(per_login, window_s, clock=clock)
        self.by_ip = SlidingWindow(per_ip, window_s, clock=clock)

    @staticmethod
    def _login_key(login: str) -> str:
        return login.strip().casefold()

    def retry_after(self, login: str, ip: str) -> float | None:
        """Seconds until this attempt may be made, or None to go ahead."""
        waits = [
            w
            for w in (
                self.by_login.retry_after(self._login_key(login)),
                self.by_ip.retry_after(ip),
            )
            if w is not None
        ]
        return max(waits) if waits else None

    def failed(self, login: str, ip: str) -> None:
        """Record a failed attempt."""
        self.by_login.record_failure(self._login_key(login))
        self.by_ip.record_failure(ip)

    def succeeded(self, login: str) -> None:
        """A correct password on an unlocked login clears that login's failures (not the IP's)."""
        self.by_login.reset(self._login_key(login))
