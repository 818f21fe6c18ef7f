"""Hypothesis strategies for every DL/T 645 frame type and value format."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from devices.dlt645 import (
    Address,
    ErrorFlags,
    ErrorReply,
    FollowUpReply,
    Frame,
    RawFrame,
    ReadAddressReply,
    ReadAddressRequest,
    ReadFollowUp,
    ReadReply,
    ReadRequest,
    RelayAction,
    RelayControl,
    RelayReply,
    Standard,
    TimeSync,
    WriteReply,
    WriteRequest,
)
from devices.dlt645.control import MODELLED_CONTROLS

_BCD_BYTE = st.integers(0, 99).map(lambda n: (n // 10) << 4 | n % 10)

addresses = st.lists(st.one_of(_BCD_BYTE, st.just(0xAA)), min_size=6, max_size=6).map(
    lambda wire: Address.from_wire(bytes(wire))
)
nameplates = st.lists(_BCD_BYTE, min_size=6, max_size=6).map(
    lambda wire: Address.from_wire(bytes(wire)).nameplate
)
standards = st.sampled_from(Standard)
codes = st.binary(min_size=4, max_size=4).map(lambda b: b.hex().upper())
stamps = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)


def _di(standard: Standard) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << (8 * standard.di_size)) - 1)


@st.composite
def read_requests(draw: st.DrawFn) -> ReadRequest:
    standard = draw(standards)
    extra = (
        b""
        if standard is Standard.V1997
        else draw(st.sampled_from([0, 1, 6]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
    )
    return ReadRequest(draw(addresses), draw(_di(standard)), standard, extra)


@st.composite
def read_replies(draw: st.DrawFn) -> ReadReply:
    standard = draw(standards)
    data = draw(st.binary(max_size=200 - standard.di_size))
    return ReadReply(draw(addresses), draw(_di(standard)), data, standard, draw(st.booleans()))


@st.composite
def follow_ups(draw: st.DrawFn) -> ReadFollowUp:
    standard = draw(standards)
    seq = draw(st.integers(0, 255)) if standard is Standard.V2007 else 0
    return ReadFollowUp(draw(addresses), draw(_di(standard)), seq, standard)


@st.composite
def follow_up_replies(draw: st.DrawFn) -> FollowUpReply:
    standard = draw(standards)
    v2007 = standard is Standard.V2007
    data = draw(st.binary(max_size=200 - standard.di_size - (1 if v2007 else 0)))
    seq = draw(st.integers(0, 255)) if v2007 else 0
    return FollowUpReply(
        draw(addresses), draw(_di(standard)), data, seq, standard, draw(st.booleans())
    )


@st.composite
def write_requests(draw: st.DrawFn) -> WriteRequest:
    standard = draw(standards)
    v2007 = standard is Standard.V2007
    data = draw(st.binary(max_size=200 - standard.di_size - (8 if v2007 else 4)))
    operator = draw(codes) if v2007 else "00000000"
    return WriteRequest(draw(addresses), draw(_di(standard)), data, draw(codes), operator, standard)


frames: st.SearchStrategy[Frame] = st.one_of(
    read_requests(),
    read_replies(),
    follow_ups(),
    follow_up_replies(),
    st.builds(ReadAddressRequest, addresses),
    st.builds(ReadAddressReply, addresses),
    write_requests(),
    st.builds(WriteReply, addresses, standards),
    st.builds(TimeSync, stamps, addresses),
    st.builds(RelayControl, addresses, st.sampled_from(RelayAction), stamps, codes, codes),
    st.builds(RelayReply, addresses),
    st.builds(ErrorReply, addresses, st.integers(0, 0x1F), st.integers(0, 255).map(ErrorFlags)),
    st.builds(
        RawFrame,
        addresses,
        st.integers(0, 255).filter(lambda c: c not in MODELLED_CONTROLS),
        st.binary(max_size=200),
    ),
)
"""Every frame type, with every field over its whole valid range."""
