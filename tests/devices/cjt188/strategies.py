"""Hypothesis strategies for CJ/T 188 frames and messages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from hypothesis import strategies as st

from devices.cjt188 import (
    AddressReply,
    CurrentData,
    ErrorReply,
    Frame,
    Function,
    Message,
    MeterAddress,
    MeterType,
    Quantity,
    ReadAddress,
    ReadCurrentData,
    Status,
    Unit,
    ValveAction,
    ValveControl,
    ValveReply,
)

digit_pairs = st.integers(0, 99).map(lambda n: f"{n:02d}")
plain_addresses = st.lists(digit_pairs, min_size=7, max_size=7).map(
    lambda pairs: MeterAddress("".join(pairs))
)
addresses = st.lists(st.one_of(digit_pairs, st.just("AA")), min_size=7, max_size=7).map(
    lambda pairs: MeterAddress("".join(pairs))
)
meter_types = st.sampled_from(list(MeterType))
water_types = st.sampled_from([MeterType.COLD_WATER, MeterType.DOMESTIC_HOT_WATER, MeterType.GAS])


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    reply = draw(st.booleans())
    return Frame(
        draw(meter_types),
        draw(addresses),
        draw(st.sampled_from(list(Function))),
        draw(st.binary(max_size=255)),
        reply,
        reply and draw(st.booleans()),
    )


sers = st.integers(0, 255)
statuses = st.integers(0, 0xFFFF).map(Status)
quantities = st.builds(
    Quantity,
    st.integers(0, 10**8 - 1).map(lambda n: Decimal(n) / 100),
    st.sampled_from(list(Unit)),
)
clocks = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda moment: moment.replace(microsecond=0)
    ),
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(ReadCurrentData, sers),
    st.builds(CurrentData, sers, quantities, quantities, clocks, statuses),
    st.builds(ReadAddress, sers),
    st.builds(AddressReply, sers),
    st.builds(ValveControl, sers, st.sampled_from(list(ValveAction))),
    st.builds(ValveReply, sers, st.one_of(st.none(), statuses)),
    st.builds(ErrorReply, st.sampled_from(list(Function)), sers, statuses),
)
