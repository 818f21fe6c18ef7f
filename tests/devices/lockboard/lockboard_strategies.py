"""Hypothesis strategies for every lock-board frame type, shared by the lock-board tests."""

from __future__ import annotations

from hypothesis import strategies as st

from devices.lockboard import (
    BAUD_RATES,
    MAX_DELAY_S,
    MAX_PULSE_MS,
    MAX_REPORTED_PULSE_MS,
    MIN_PULSE_MS,
    PULSE_UNIT_MS,
    AllBoardsStatus,
    BoardStatus,
    DelayedUnlock,
    Frame,
    OpenAll,
    OpenLock,
    PulseTime,
    QueryAllBoards,
    QueryBoard,
    QueryInfrared,
    QueryPulseTime,
    SetBaud,
    SetPulseTime,
)

boards = st.integers(0, 15)
locks = st.integers(1, 16)
bits = st.tuples(*[st.booleans()] * 16)
set_pulses = st.integers(MIN_PULSE_MS // PULSE_UNIT_MS, MAX_PULSE_MS // PULSE_UNIT_MS).map(
    lambda units: units * PULSE_UNIT_MS
)
reported_pulses = st.integers(0, MAX_REPORTED_PULSE_MS // PULSE_UNIT_MS).map(
    lambda units: units * PULSE_UNIT_MS
)

requests: st.SearchStrategy[Frame] = st.one_of(
    st.builds(QueryBoard, boards),
    st.builds(OpenLock, boards, locks),
    st.just(QueryAllBoards()),
    st.builds(OpenAll, boards),
    st.builds(SetPulseTime, boards, set_pulses),
    st.builds(QueryPulseTime, boards),
    st.builds(DelayedUnlock, boards, locks, st.integers(0, MAX_DELAY_S)),
    st.builds(QueryInfrared, boards),
    st.builds(SetBaud, boards, st.sampled_from(BAUD_RATES)),
)
"""Every request type, with any valid values."""

replies: st.SearchStrategy[Frame] = st.one_of(
    st.builds(BoardStatus, boards, bits, bits),
    st.builds(AllBoardsStatus, boards, bits, bits),
    st.builds(PulseTime, boards, reported_pulses),
)
"""Every reply type, with any valid values."""

frames: st.SearchStrategy[Frame] = st.one_of(requests, replies)
"""Any frame."""

noise = st.binary(max_size=40).map(lambda data: data.replace(b"\x02", b""))
"""Line noise that holds no STX, so it can never start a frame."""
