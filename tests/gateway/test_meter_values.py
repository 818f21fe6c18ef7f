"""A meter value on the sync wire: exact decimals the cloud can store, or nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.meters import _on_wire


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (Decimal("1234.56"), Decimal("1234.56")),
        (Decimal("0.0000000004"), Decimal("0E-9")),
        (Decimal("0.0000000015"), Decimal("2E-9")),  # half-even
        (Decimal("-3.1234567891"), Decimal("-3.123456789")),
        (Decimal("1E+3"), Decimal("1E+3")),
        ("open", "open"),
    ],
)
def test_values_are_kept_exact_or_rounded_to_nine_decimals(value: object, wire: object) -> None:
    out = _on_wire(value)  # type: ignore[arg-type]
    assert out == wire
    if isinstance(out, Decimal):
        assert len(format(out, "f").partition(".")[2]) <= 9


@pytest.mark.parametrize(
    "value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("1e18")]
)
def test_values_the_cloud_cannot_store_are_missing(value: Decimal) -> None:
    assert _on_wire(value) is None
