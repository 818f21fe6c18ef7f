from __future__ import annotations

import pytest

from cloud_sync.protocol import TERMINAL, CommandStatus, IllegalTransition, advance, can_advance

S = CommandStatus


def test_happy_paths() -> None:
    state = S.QUEUED
    for nxt in (S.SENT, S.ACKNOWLEDGED, S.OPENED):
        state = advance(state, nxt)
    assert state is S.OPENED
    assert advance(S.ACKNOWLEDGED, S.RELEASED_NOT_OPENED) is S.RELEASED_NOT_OPENED


def test_terminal_states_absorb() -> None:
    assert {S.OPENED, S.RELEASED_NOT_OPENED, S.REJECTED, S.FAILED, S.EXPIRED} == TERMINAL
    for t in TERMINAL:
        for other in S:
            assert not can_advance(t, other)
            with pytest.raises(IllegalTransition):
                advance(t, other)


def test_outcome_may_overtake_acknowledged_but_not_skip_sending() -> None:
    assert advance(S.SENT, S.OPENED) is S.OPENED
    with pytest.raises(IllegalTransition):
        advance(S.QUEUED, S.OPENED)
    with pytest.raises(IllegalTransition):
        advance(S.ACKNOWLEDGED, S.EXPIRED)
