from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trust import BlindIndexer, DataKey, Keyring, Place, SealError, open_sealed, seal


def test_seal_binds_value_to_its_place() -> None:
    key, _ = DataKey.generate()
    here = Place("residents", "name", "7")
    sealed = seal(key, "李小红", here)
    assert open_sealed(key, sealed, here) == "李小红"
    for elsewhere in (Place("residents", "name", "8"), Place("residents", "phone", "7")):
        with pytest.raises(SealError):
            open_sealed(key, sealed, elsewhere)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SealError):
        open_sealed(key, bytes(tampered), here)


@given(st.text(max_size=200))
def test_seal_round_trip(text: str) -> None:
    key, _ = DataKey.generate()
    place = Place("t", "c", "r")
    assert open_sealed(key, seal(key, text, place), place) == text


@given(st.binary(max_size=80))
def test_open_random_bytes_only_raises_seal_error(data: bytes) -> None:
    key, _ = DataKey.generate()
    with pytest.raises(SealError):
        open_sealed(key, data, Place("t", "c", "r"))


def test_keyring_wrap_rotate_and_shred(tmp_path: Path) -> None:
    ring = Keyring.from_directory(tmp_path)
    (kek_file,) = tmp_path.glob("kek-*.key")
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o600
    key, raw = DataKey.generate()
    wrapped = ring.wrap(raw, "resident:1")
    sealed = seal(key, "13812348000", Place("residents", "phone", "1"))
    with pytest.raises(SealError):
        ring.unwrap(wrapped, "resident:2")
    # rotation: a newer KEK becomes current; old wraps still open, rewrap moves them
    (tmp_path / "kek-0002-aaaa.key").write_bytes(b"\x01" * 32)
    (tmp_path / "kek-0002-aaaa.key").chmod(0o600)
    ring2 = Keyring.from_directory(tmp_path)
    assert ring2.current == "0002-aaaa"
    rewrapped = ring2.rewrap(wrapped, "resident:1")
    assert ring2.wrapped_by(rewrapped) == "0002-aaaa"
    again = ring2.unwrap(rewrapped, "resident:1")
    assert open_sealed(again, sealed, Place("residents", "phone", "1")) == "13812348000"


def test_blind_index_is_keyed_and_deterministic() -> None:
    a = BlindIndexer(b"a" * 32)
    b = BlindIndexer(b"b" * 32)
    assert a.digest("phone", "13812348000") == a.digest("phone", "13812348000")
    assert a.digest("phone", "13812348000") != b.digest("phone", "13812348000")
    assert a.digest("phone", "13812348000") != a.digest("card", "13812348000")
    assert "13812348000" not in a.digest("phone", "13812348000")
