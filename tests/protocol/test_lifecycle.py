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


def test_a_meter_read_completes_after_acknowledged() -> None:
    state = S.QUEUED
    for nxt in (S.SENT, S.ACKNOWLEDGED, S.COMPLETED):
        state = advance(state, nxt)
    assert state is S.COMPLETED
    assert can_advance(S.ACKNOWLEDGED, S.COMPLETED)
    assert not can_advance(S.SENT, S.COMPLETED)  # only implicitly, through acknowledged


def test_terminal_states_absorb() -> None:
    assert {
        S.OPENED,
        S.RELEASED_NOT_OPENED,
        S.COMPLETED,
        S.REJECTED,
        S.FAILED,
        S.EXPIRED,
    } == TERMINAL
    for t in TERMINAL:
        for other in S:
            assert not can_advance(t, other)
            with pytest.raises(IllegalTransition):
                advance(t, other)


def test_outcome_may_overtake_acknowledged_but_not_skip_sending() -> None:
    assert advance(S.SENT, S.OPENED) is S.OPENED
    assert advance(S.SENT, S.COMPLETED) is S.COMPLETED
    with pytest.raises(IllegalTransition):
        advance(S.QUEUED, S.OPENED)
    with pytest.raises(IllegalTransition):
        advance(S.QUEUED, S.COMPLETED)
    with pytest.raises(IllegalTransition):
        advance(S.ACKNOWLEDGED, S.EXPIRED)


def test_the_door_path_is_unchanged_by_completed() -> None:
    assert {s for s in S if can_advance(S.ACKNOWLEDGED, s)} == {
        S.OPENED,
        S.RELEASED_NOT_OPENED,
        S.COMPLETED,
        S.FAILED,
    }
    assert {s for s in S if can_advance(S.SENT, s)} == {
        S.ACKNOWLEDGED,
        S.REJECTED,
        S.FAILED,
        S.EXPIRED,
    }
    assert {s for s in S if can_advance(S.QUEUED, s)} == {S.SENT, S.FAILED, S.EXPIRED}
