"""Hypothesis strategies for Modbus RTU frames."""

from __future__ import annotations

from hypothesis import strategies as st

from devices.modbus import (
    ExceptionReply,
    FunctionCode,
    ReadReply,
    ReadRequest,
    Reply,
    Request,
    WriteMultipleReply,
    WriteMultipleRequest,
    WriteSingleReply,
    WriteSingleRequest,
)

HOLDING = FunctionCode.READ_HOLDING_REGISTERS
INPUT = FunctionCode.READ_INPUT_REGISTERS

units = st.integers(1, 247)
words = st.integers(0, 0xFFFF)
read_functions = st.sampled_from([HOLDING, INPUT])


@st.composite
def read_requests(draw: st.DrawFn) -> ReadRequest:
    count = draw(st.integers(1, 125))
    return ReadRequest(
        draw(units), draw(read_functions), draw(st.integers(0, 0x10000 - count)), count
    )


@st.composite
def write_multiple_requests(draw: st.DrawFn) -> WriteMultipleRequest:
    values = tuple(draw(st.lists(words, min_size=1, max_size=123)))
    address = draw(st.integers(0, 0x10000 - len(values)))
    return WriteMultipleRequest(draw(st.integers(0, 247)), address, values)


requests: st.SearchStrategy[Request] = st.one_of(
    read_requests(),
    st.builds(WriteSingleRequest, st.integers(0, 247), words, words),
    write_multiple_requests(),
)
replies: st.SearchStrategy[Reply] = st.one_of(
    st.builds(
        ReadReply, units, read_functions, st.lists(words, min_size=1, max_size=125).map(tuple)
    ),
    st.builds(WriteSingleReply, units, words, words),
    st.builds(WriteMultipleReply, units, words, st.integers(1, 123)),
    st.builds(ExceptionReply, units, st.integers(1, 127), st.integers(1, 255)),
)
