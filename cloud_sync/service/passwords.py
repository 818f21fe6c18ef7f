"""Password hashing for human logins: Argon2id through argon2-cffi, off the event loop.

One hash with argon2-cffi's defaults costs ~120 ms of CPU and 64 MiB here, by design. The async
methods run it in a worker thread so one login never stalls every other request, and at most one
hash per CPU runs at a time so a burst of logins cannot exhaust memory (login is rate limited
too). Verifying against an absent hash still does the work, so a login that does not exist costs
the same time as a wrong password and does not reveal which logins exist.
"""

from __future__ import annotations

import asyncio
import os
import threading

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MAX_PASSWORD_CHARS", "MIN_PASSWORD_CHARS", "PasswordHasher"]

#: Bounds on what :meth:`PasswordHasher.hash` accepts.
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

# At most one hash per CPU at once, shared by every hasher in the process.
_CPU_SLOTS = threading.BoundedSemaphore(os.cpu_count() or 1)


class PasswordHasher:
    """Hashes and verifies passwords with Argon2id."""

    __slots__ = ("_dummy", "_hasher")

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        # argon2-cffi's defaults are RFC 9106's "low memory" profile: argon2id, t=3, m=64 MiB, p=4.
        self._hasher = hasher or argon2.PasswordHasher()
        self._dummy: str | None = None

    @classmethod
    def fast_for_tests(cls) -> PasswordHasher:
        """A hasher with the cheapest parameters: for tests and the demo only, never production."""
        return cls(argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))

    def hash(self, password: str) -> str:
        """The encoded Argon2id hash of ``password`` (with a fresh salt)."""
        if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
            raise ValueError(
                f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
            )
        with _CPU_SLOTS:
            return self._hasher.hash(password)

    def verify(self, encoded: str | None, password: str) -> bool:
        """Whether ``password`` matches ``encoded``; ``False`` (never an error) when it does not.

        ``encoded=None`` (no such login) does the same work against a dummy hash and returns
        ``False``, so the two cases take the same time. A malformed stored hash is ``False`` too.
        """
        if len(password) > MAX_PASSWORD_CHARS:
            return False
        target = encoded if encoded is not None else self._dummy_hash()
        try:
            with _CPU_SLOTS:
                ok = self._hasher.verify(target, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and encoded is not None

    def needs_rehash(self, encoded: str) -> bool:
        """Whether ``encoded`` used other parameters than this hasher's (rehash it at login)."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except InvalidHashError:
            return True

    async def ahash(self, password: str) -> str:
        """:meth:`hash` in a worker thread."""
        return await asyncio.to_thread(self.hash, password)

    async def averify(self, encoded: str | None, password: str) -> bool:
        """:meth:`verify` in a worker thread."""
        return await asyncio.to_thread(self.verify, encoded, password)

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            with _CPU_SLOTS:
                self._dummy = self._hasher.hash(os.urandom(16).hex())
        return self._dummy
