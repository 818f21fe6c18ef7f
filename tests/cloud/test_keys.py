from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloud_sync.protocol.pickup_code import derive_site_code_key
from cloud_sync.service.keys import (
    AUDIT_KEY_FILE,
    BLIND_INDEX_FILE,
    PARCEL_CODE_KEY_FILE,
    SIGNING_KEY_FILE,
    CloudKeys,
)
from trust import DataKey, KeyFileError, Place, SigningKey, open_sealed, seal


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_private_key_files(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    keys = CloudKeys.load_or_create(directory)
    assert _mode(directory) == 0o700
    names = sorted(p.name for p in directory.iterdir())
    (kek,) = [n for n in names if n.startswith("kek-")]
    assert names == sorted(
        [
            kek,
            BLIND_INDEX_FILE,
            SIGNING_KEY_FILE,
            SIGNING_KEY_FILE + ".pub",
            AUDIT_KEY_FILE,
            PARCEL_CODE_KEY_FILE,
        ]
    )
    for name in names:
        assert _mode(directory / name) == 0o600, name
    assert keys.keyring.current == kek.removeprefix("kek-").removesuffix(".key")


def test_second_start_loads_the_same_keys(tmp_path: Path) -> None:
    first = CloudKeys.load_or_create(tmp_path / "keys")
    second = CloudKeys.load_or_create(tmp_path / "keys")
    assert second.signing.kid == first.signing.kid
    assert second.blind.digest("phone", "13812348000") == first.blind.digest("phone", "13812348000")
    key, raw = DataKey.generate()
    wrapped = first.keyring.wrap(raw, "resident:1")
    place = Place("t", "c", "1")
    assert open_sealed(second.keyring.unwrap(wrapped, "resident:1"), seal(key, "x", place), place)
    sealed = seal(first.audit_key, "detail", place)
    assert open_sealed(second.audit_key, sealed, place) == "detail"
    signature = first.signing.sign("test", b"m")
    second.signing.verify_key.verify("test", b"m", signature)
    assert second.gateway_code_key("gw-1") == first.gateway_code_key("gw-1")


@pytest.mark.parametrize(
    "which", ["kek", BLIND_INDEX_FILE, SIGNING_KEY_FILE, AUDIT_KEY_FILE, PARCEL_CODE_KEY_FILE]
)
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, which: str) -> None:
    directory = tmp_path / "keys"
    CloudKeys.load_or_create(directory)
    (path,) = directory.glob("kek-*.key") if which == "kek" else [directory / which]
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="too open"):
        CloudKeys.load_or_create(directory)


def test_an_open_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(KeyFileError, match="too open"):
        CloudKeys.load_or_create(directory)
    assert list(directory.iterdir()) == []  # refused before anything was written


def test_a_replaced_public_key_is_refused_and_a_missing_one_restored(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    keys = CloudKeys.load_or_create(directory)
    pub = directory / (SIGNING_KEY_FILE + ".pub")
    pub.unlink()
    CloudKeys.load_or_create(directory)
    assert pub.read_text().strip() == keys.signing.verify_key.to_text()
    pub.write_text(SigningKey.generate().verify_key.to_text() + "\n")
    with pytest.raises(KeyFileError, match="does not match"):
        CloudKeys.load_or_create(directory)


def test_a_short_blind_index_key_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    CloudKeys.load_or_create(directory)
    (directory / BLIND_INDEX_FILE).write_bytes(b"short")
    with pytest.raises(KeyFileError, match="32 bytes"):
        CloudKeys.load_or_create(directory)


def test_a_short_parcel_code_key_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    CloudKeys.load_or_create(directory)
    (directory / PARCEL_CODE_KEY_FILE).write_bytes(b"\x00" * 31)
    with pytest.raises(KeyFileError, match="32 bytes"):
        CloudKeys.load_or_create(directory)


def test_gateway_code_keys_derive_from_the_master_key_per_gateway(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    keys = CloudKeys.load_or_create(directory)
    master = (directory / PARCEL_CODE_KEY_FILE).read_bytes()
    assert len(master) == 32
    one, two = keys.gateway_code_key("gw-1"), keys.gateway_code_key("gw-2")
    assert one == derive_site_code_key(master, "gw-1")
    assert len(one) == len(two) == 32
    assert one != two
    assert master.hex() not in repr(keys)
    with pytest.raises(ValueError, match="gateway id"):
        keys.gateway_code_key("gw/1")


def test_an_older_key_directory_gains_the_parcel_code_key_only(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    CloudKeys.load_or_create(directory)
    (directory / PARCEL_CODE_KEY_FILE).unlink()
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    keys = CloudKeys.load_or_create(directory)
    after = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert set(after) == {*before, PARCEL_CODE_KEY_FILE}
    assert {name: after[name] for name in before} == before
    assert _mode(directory / PARCEL_CODE_KEY_FILE) == 0o600
    assert keys.gateway_code_key("gw-1") == derive_site_code_key(
        after[PARCEL_CODE_KEY_FILE], "gw-1"
    )
