from __future__ import annotations

import stat
from pathlib import Path

import pytest

from trust import KeyFileError, SignatureError, SigningKey, VerifyKey


def test_sign_verify_and_domain_separation() -> None:
    key = SigningKey.generate()
    sig = key.sign("cmd/v1", b"open door 1")
    key.verify_key.verify("cmd/v1", b"open door 1", sig)
    with pytest.raises(SignatureError):
        key.verify_key.verify("pass/v1", b"open door 1", sig)
    with pytest.raises(SignatureError):
        key.verify_key.verify("cmd/v1", b"open door 2", sig)
    with pytest.raises(SignatureError):
        SigningKey.generate().verify_key.verify("cmd/v1", b"open door 1", sig)


def test_key_files_are_private_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    key = SigningKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SigningKey.load_or_create(path)
    assert again.kid == key.kid
    pub = VerifyKey.load(path.with_name("signing.key.pub"))
    assert pub == key.verify_key
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="too open"):
        SigningKey.load(path)


def test_kid_is_stable_and_short() -> None:
    key = SigningKey.generate()
    assert len(key.kid) == 16
    assert VerifyKey.from_text(key.verify_key.to_text()).kid == key.kid
