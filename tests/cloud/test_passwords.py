from __future__ import annotations

import asyncio
import threading

import argon2
import pytest

from cloud_sync.service.passwords import MAX_PASSWORD_CHARS, PasswordHasher


def test_hash_is_salted_argon2id_and_verifies(hasher: PasswordHasher) -> None:
    first, second = hasher.hash("correct horse"), hasher.hash("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second
    assert hasher.verify(first, "correct horse")
    assert hasher.verify(second, "correct horse")


@pytest.mark.parametrize(
    "stored", ["WRONG", "", "$argon2id$v=19$m=1024,t=1,p=1$garbage", "$2b$12$notargon"]
)
def test_wrong_password_or_bad_hash_is_false_never_an_error(
    hasher: PasswordHasher, stored: str
) -> None:
    good = hasher.hash("correct horse")
    assert hasher.verify(good, "battery staple") is False
    real = good if stored == "WRONG" else stored
    assert hasher.verify(real, "correct horse") is (real == good)


def test_absent_hash_does_the_work_and_is_false(hasher: PasswordHasher) -> None:
    assert hasher.verify(None, "any password") is False
    assert hasher.verify(None, "any password") is False  # the dummy is reused


def test_password_bounds(hasher: PasswordHasher) -> None:
    with pytest.raises(ValueError, match="8 to"):
        hasher.hash("short")
    with pytest.raises(ValueError, match="8 to"):
        hasher.hash("x" * (MAX_PASSWORD_CHARS + 1))
    assert hasher.verify(hasher.hash("x" * 8), "x" * (MAX_PASSWORD_CHARS + 1)) is False


def test_needs_rehash_when_parameters_change(hasher: PasswordHasher) -> None:
    cheap = hasher.hash("correct horse")
    assert hasher.needs_rehash(cheap) is False
    production = PasswordHasher()
    assert production.needs_rehash(cheap) is True
    assert production.needs_rehash("not a hash") is True


class _RecordingHasher(PasswordHasher):
    __slots__ = ("threads",)

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        super().__init__(hasher)
        self.threads: list[int] = []

    def verify(self, encoded: str | None, password: str) -> bool:
        self.threads.append(threading.get_ident())
        return super().verify(encoded, password)

    def hash(self, password: str) -> str:
        self.threads.append(threading.get_ident())
        return super().hash(password)


async def test_async_variants_run_off_the_event_loop_thread() -> None:
    hasher = _RecordingHasher.fast_for_tests()
    assert isinstance(hasher, _RecordingHasher)
    encoded = await hasher.ahash("correct horse")
    ok, wrong = await asyncio.gather(
        hasher.averify(encoded, "correct horse"), hasher.averify(encoded, "wrong horse")
    )
    assert (ok, wrong) == (True, False)
    assert len(hasher.threads) == 3
    assert threading.get_ident() not in hasher.threads
