"""A wall clock for security decisions that never goes backwards, even across restarts.

Expiry checks (commands, passes) compare against wall-clock time, which an NTP step or a dead RTC
battery can move backwards — reopening a window an attacker could replay into. :class:`SafeClock`
returns ``max(system time, highest time ever returned)``, persisting its high-water mark so a
restart cannot rewind it either, and reports how far the system clock lags it (drift alarm).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

__all__ = ["SafeClock"]

_PERSIST_EVERY_MS = 1_000


class SafeClock:
    """Milliseconds since the epoch, monotonic across calls and restarts."""

    def __init__(self, state_file: Path | None = None) -> None:
        self._file = state_file
        self._lock = threading.Lock()
        self._high = 0
        self._persisted = 0
        if state_file is not None and state_file.exists():
            try:
                self._high = int(state_file.read_text(encoding="ascii").strip() or 0)
            except ValueError:
                self._high = 0
            self._persisted = self._high
        self.backwards_ms = 0

    def now_ms(self) -> int:
        """The current time in ms, never less than any earlier answer."""
        sys_ms = time.time_ns() // 1_000_000
        with self._lock:
            if sys_ms < self._high:
                self.backwards_ms = max(self.backwards_ms, self._high - sys_ms)
                return self._high
            self._high = sys_ms
            if self._file is not None and sys_ms - self._persisted >= _PERSIST_EVERY_MS:
                self._persist(sys_ms)
            return sys_ms

    def flush(self) -> None:
        """Persist the high-water mark now (call on shutdown and before security decisions)."""
        with self._lock:
            if self._file is not None and self._high > self._persisted:
                self._persist(self._high)

    def _persist(self, value: int) -> None:
        assert self._file is not None
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(str(value), encoding="ascii")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._file)
        self._persisted = value
