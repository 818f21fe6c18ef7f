from __future__ import annotations

from pathlib import Path

import pytest

from trust import SafeClock


def test_clock_never_goes_back_across_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "clock"
    now = [1_800_000_000_000_000_000]
    monkeypatch.setattr("trust.clock.time.time_ns", lambda: now[0])
    clock = SafeClock(state)
    first = clock.now_ms()
    clock.flush()
    now[0] -= 3_600 * 10**9  # the system clock is stepped back an hour, then we restart
    restarted = SafeClock(state)
    assert restarted.now_ms() == first
    assert restarted.backwards_ms == 3_600_000
    now[0] += 7_200 * 10**9
    assert restarted.now_ms() == first + 3_600_000
