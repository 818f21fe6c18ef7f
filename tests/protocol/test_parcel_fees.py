"""The parcel fee rule of docs/parcels.md "Money": examples and properties."""

from __future__ import annotations

from fractions import Fraction
from math import ceil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.protocol.parcel_fees import HOUR_MS, FeeRule, fee_cents

DEFAULT = FeeRule()

rules = st.builds(
    FeeRule,
    free_h=st.integers(0, 200),
    period_h=st.integers(1, 200),
    per_period_cents=st.integers(0, 10_000),
    cap_cents=st.integers(0, 100_000),
)
stored = st.integers(-(10**9), 400 * HOUR_MS)


@pytest.mark.parametrize(
    ("stored_ms", "cents"),
    [
        (0, 0),
        (12 * HOUR_MS, 0),  # exactly the free time: free
        (12 * HOUR_MS + 1, 50),  # a started period costs the whole period
        (24 * HOUR_MS, 50),
        (24 * HOUR_MS + 1, 100),
        (36 * HOUR_MS, 100),
        (72 * HOUR_MS, 250),
        (72 * HOUR_MS + 1, 300),  # the cap reached
        (1000 * HOUR_MS, 300),
        (-5, 0),  # a clock stepped back
    ],
)
def test_the_contract_examples(stored_ms: int, cents: int) -> None:
    assert fee_cents(stored_ms, DEFAULT) == cents


@given(rules, stored)
def test_matches_the_formula(rule: FeeRule, stored_ms: int) -> None:
    hours = Fraction(stored_ms, HOUR_MS)
    expected = (
        0
        if hours <= rule.free_h
        else min(
            rule.cap_cents, ceil((hours - rule.free_h) / rule.period_h) * rule.per_period_cents
        )
    )
    assert fee_cents(stored_ms, rule) == expected


@given(rules, stored, stored)
def test_never_decreases_with_time(rule: FeeRule, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert fee_cents(low, rule) <= fee_cents(high, rule)


@given(rules, stored)
def test_bounded_by_zero_and_the_cap(rule: FeeRule, stored_ms: int) -> None:
    fee = fee_cents(stored_ms, rule)
    assert 0 <= fee <= rule.cap_cents
    if rule.per_period_cents:
        assert fee % rule.per_period_cents == 0 or fee == rule.cap_cents
    else:
        assert fee == 0


@given(rules, st.integers(-(10**9), 0))
def test_free_within_the_free_time(rule: FeeRule, before_end: int) -> None:
    assert fee_cents(rule.free_h * HOUR_MS + before_end, rule) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"free_h": -1},
        {"period_h": 0},
        {"per_period_cents": -1},
        {"cap_cents": -1},
        {"free_h": True},
        {"period_h": 1.5},
    ],
)
def test_invalid_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        FeeRule(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1.0, True, "1"])
def test_stored_must_be_an_integer(value: object) -> None:
    with pytest.raises(ValueError, match="stored_ms"):
        fee_cents(value, DEFAULT)  # type: ignore[arg-type]
