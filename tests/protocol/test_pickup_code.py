"""Pickup codes (docs/parcels.md "Pickup codes").

Pinned known answers, an independent re-computation of the spec's formulas, the choice of n,
bounds, and a deterministic distribution check.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.protocol import (
    PickupCodeExhausted,
    choose_code,
    code_index,
    derive_code,
    derive_site_code_key,
)
from cloud_sync.protocol.pickup_code import MAX_CODE_N, is_code_shaped

MASTER = bytes(range(32))
PARCEL = "0123456789abcdef0123456789abcdef"
KEY = derive_site_code_key(MASTER, "gw-1")


def parcels(count: int) -> list[str]:
    """Deterministic parcel ids."""
    return [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(count)]


# --- known answers (computed once with this implementation, then pinned) ------------------------


def test_known_answers() -> None:
    assert KEY.hex() == "bd1702480ad0904d88cabf52619663160c24c4a50b36cfa5c6a5d0cedfcd8dfd"
    assert derive_site_code_key(MASTER, "gw-2").hex() == (
        "d0920b020f20632b748d5e7800c5dde5f83e18f04e4facfaf3f376c3ad316eb5"
    )
    assert [derive_code(KEY, PARCEL, n) for n in range(3)] == ["37572807", "42488237", "49646093"]
    assert [derive_code(KEY, PARCEL, n, 6) for n in range(3)] == ["572807", "488237", "646093"]
    assert derive_code(KEY, PARCEL, 0, 7) == "7572807"
    assert code_index(KEY, "A", "37572807") == (
        "4cbb0375d4dac7e8a45dedeb7c5ea99772cd9b0f166b99d035021714e25dc56f"
    )


def _hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac, independent of the cryptography package."""
    prk = hmac.digest(b"\x00" * 32, ikm, "sha256")  # no salt = HashLen zero bytes
    okm, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes([i]), "sha256")
        okm += block
    return okm[:length]


@pytest.mark.parametrize("gateway", ["gw-1", "site.7:north_A", "x" * 64])
def test_the_key_is_the_documented_hkdf(gateway: str) -> None:
    expected = _hkdf_sha256(MASTER, b"courtyard pickup-code/v1|" + gateway.encode(), 32)
    assert derive_site_code_key(MASTER, gateway) == expected


@given(st.from_regex(r"[0-9a-f]{32}", fullmatch=True), st.integers(0, MAX_CODE_N - 1))
def test_code_and_index_are_the_documented_hmacs(parcel: str, n: int) -> None:
    mac = hmac.digest(KEY, f"pickup-code/v1|{parcel}|{n}".encode(), "sha256")
    for digits in (6, 7, 8):
        code = derive_code(KEY, parcel, n, digits)
        assert code == f"{int.from_bytes(mac, 'big') % 10**digits:0{digits}d}"
        assert code_index(KEY, "A", code) == (
            hmac.new(KEY, f"pickup-index/v1|A|{code}".encode(), "sha256").hexdigest()
        )


# --- choosing n ------------------------------------------------------------------------------


def test_first_free_code_is_n_zero() -> None:
    n, code, index = choose_code(KEY, PARCEL, "A", set())
    assert (n, code) == (0, derive_code(KEY, PARCEL, 0))
    assert index == code_index(KEY, "A", code)


def test_taken_codes_are_skipped_in_order() -> None:
    taken = {code_index(KEY, "A", derive_code(KEY, PARCEL, n)) for n in (0, 1, 3)}
    assert choose_code(KEY, PARCEL, "A", taken)[0] == 2
    taken.add(code_index(KEY, "A", derive_code(KEY, PARCEL, 2)))
    assert choose_code(KEY, PARCEL, "A", taken)[:2] == (4, derive_code(KEY, PARCEL, 4))


def test_a_code_taken_in_another_bank_is_free_here() -> None:
    taken = {code_index(KEY, "B", derive_code(KEY, PARCEL, 0))}
    assert choose_code(KEY, PARCEL, "A", taken)[0] == 0


def test_a_full_bank_of_six_digit_codes_is_collision_free() -> None:
    """Fill a bank the way the gateway would: every occupied parcel's code is distinct."""
    taken: set[str] = set()
    codes: set[str] = set()
    for parcel in parcels(3000):
        n, code, index = choose_code(KEY, parcel, "A", taken, digits=6)
        assert index not in taken
        assert code not in codes
        assert derive_code(KEY, parcel, n, 6) == code  # the cloud recomputes it from code_n
        taken.add(index)
        codes.add(code)
    assert len(codes) == 3000


class _Everything:
    """A broken taken-set that claims every index and counts the questions."""

    def __init__(self) -> None:
        self.asked = 0

    def __contains__(self, item: object) -> bool:
        self.asked += 1
        return True


def test_gives_up_after_max_code_n_candidates() -> None:
    everything = _Everything()
    with pytest.raises(PickupCodeExhausted):
        choose_code(KEY, PARCEL, "A", everything)
    assert everything.asked == MAX_CODE_N


# --- bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [5, 9, 0, -8, True, 8.0, "8"])
def test_digits_outside_6_to_8_are_refused(digits: object) -> None:
    with pytest.raises(ValueError, match="digits"):
        derive_code(KEY, PARCEL, 0, digits)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="digits"):
        choose_code(KEY, PARCEL, "A", set(), digits)  # type: ignore[arg-type]


@pytest.mark.parametrize("digits", [6, 7, 8])
def test_codes_have_exactly_digits_digits(digits: int) -> None:
    codes = [derive_code(KEY, p, 0, digits) for p in parcels(300)]
    assert all(len(c) == digits and c.isdigit() for c in codes)


def test_codes_keep_leading_zeros() -> None:
    zero_led = [c for c in (derive_code(KEY, p, 0) for p in parcels(300)) if c.startswith("0")]
    assert zero_led, "some code of 300 starts with 0"
    assert all(len(c) == 8 for c in zero_led)


@pytest.mark.parametrize("n", [-1, MAX_CODE_N, True, "0"])
def test_n_is_bounded(n: object) -> None:
    with pytest.raises(ValueError, match="n must"):
        derive_code(KEY, PARCEL, n)  # type: ignore[arg-type]


@pytest.mark.parametrize("parcel", [PARCEL.upper(), PARCEL[:-1], PARCEL + "0", "", None])
def test_parcel_ids_are_validated(parcel: object) -> None:
    with pytest.raises(ValueError, match="parcel"):
        derive_code(KEY, parcel, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [b"", b"k" * 31, b"k" * 33, "k" * 32])
def test_keys_are_32_bytes(key: object) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        derive_code(key, PARCEL, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        code_index(key, "A", "12345678")  # type: ignore[arg-type]


def test_master_key_and_gateway_id_are_validated() -> None:
    with pytest.raises(ValueError, match="master"):
        derive_site_code_key(b"short", "gw-1")
    with pytest.raises(ValueError, match="gateway id"):
        derive_site_code_key(MASTER, "gw 1")
    with pytest.raises(ValueError, match="gateway id"):
        derive_site_code_key(MASTER, "")


@pytest.mark.parametrize("code", ["12345", "123456789", "1234567a", " 1234567", "١٢٣٤٥٦٧٨", ""])
def test_index_refuses_what_is_not_a_code(code: str) -> None:
    with pytest.raises(ValueError, match="code"):
        code_index(KEY, "A", code)


def test_index_refuses_a_bad_bank() -> None:
    with pytest.raises(ValueError, match="bank"):
        code_index(KEY, "A|B", "12345678")


def test_is_code_shaped() -> None:
    assert is_code_shaped("01234567")
    assert is_code_shaped("012345", 6)
    assert not is_code_shaped("012345")
    assert not is_code_shaped("0123456a")
    assert not is_code_shaped("١٢٣٤٥٦٧٨")  # Unicode digits are not keypad digits
    assert not is_code_shaped(12345678)


# --- keys separate sites and banks -----------------------------------------------------------


def test_gateways_get_unrelated_keys_and_codes() -> None:
    other = derive_site_code_key(MASTER, "gw-2")
    assert other != KEY
    same = sum(derive_code(KEY, p, 0) == derive_code(other, p, 0) for p in parcels(200))
    assert same == 0


def test_banks_index_the_same_code_differently() -> None:
    assert code_index(KEY, "A", "12345678") != code_index(KEY, "B", "12345678")


# --- distribution (deterministic, no statistics library) ------------------------------------


def _digits_by_position(codes: list[str]) -> Iterator[set[str]]:
    for i in range(len(codes[0])):
        yield {c[i] for c in codes}


@pytest.mark.parametrize("digits", [6, 8])
def test_distribution_sanity(digits: int) -> None:
    codes = [derive_code(KEY, p, 0, digits) for p in parcels(1000)]
    # Every position, the leading one included, takes every decimal digit over 1000 parcels.
    for seen in _digits_by_position(codes):
        assert seen == set("0123456789")
    # Leading digits are roughly uniform: each within [50, 150] of the expected 100.
    counts = [sum(c[0] == d for c in codes) for d in "0123456789"]
    assert all(50 <= k <= 150 for k in counts), counts
    # Almost no repeats (the birthday bound for 1000 draws in 10**6 is ~0.5 expected).
    assert len(set(codes)) >= 995
