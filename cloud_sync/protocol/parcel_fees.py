"""A parcel's storage fee, computed the same way by the gateway and the cloud (docs/parcels.md).

::

    fee(stored) = 0                                                   if stored <= free
                = min(cap, ceil((stored - free) / period) * per_period)   otherwise

on integers only: ``stored`` in milliseconds (from ``deposited_at`` to the moment the pickup
claimed the parcel), the rule's times in whole hours, money in cents (fen). A parcel picked up
exactly at the end of its free time pays nothing; one millisecond later it pays one period.
A negative ``stored`` (a clock stepped back under the parcel) is treated as zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["HOUR_MS", "FeeRule", "fee_cents"]

HOUR_MS: Final = 3_600_000
_MAX_HOURS: Final = 10 * 8760  # ten years: bounds every product below far under 2**63
_MAX_CENTS: Final = 100_000_000


def _check(value: int, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}")


@dataclass(frozen=True, slots=True)
class FeeRule:
    """A site's fee rule; the defaults are the contract's (12 h free, ¥0.50 per 12 h, ¥3 cap)."""

    free_h: int = 12
    """Hours a parcel is stored for free."""
    period_h: int = 12
    """Each started period after the free time costs ``per_period_cents``."""
    per_period_cents: int = 50
    cap_cents: int = 300
    """No parcel ever costs more than this."""

    def __post_init__(self) -> None:
        _check(self.free_h, "free_h", 0, _MAX_HOURS)
        _check(self.period_h, "period_h", 1, _MAX_HOURS)
        _check(self.per_period_cents, "per_period_cents", 0, _MAX_CENTS)
        _check(self.cap_cents, "cap_cents", 0, _MAX_CENTS)


def fee_cents(stored_ms: int, rule: FeeRule) -> int:
    """The fee in cents for a parcel stored ``stored_ms`` milliseconds under ``rule``."""
    if isinstance(stored_ms, bool) or not isinstance(stored_ms, int):
        raise ValueError("stored_ms must be an integer")
    beyond = stored_ms - rule.free_h * HOUR_MS
    if beyond <= 0:
        return 0
    period_ms = rule.period_h * HOUR_MS
    periods = -(-beyond // period_ms)  # ceiling division on integers
    return min(rule.cap_cents, periods * rule.per_period_cents)
