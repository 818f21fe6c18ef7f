"""Logins, bearer tokens, and turning a request's token into a :class:`Principal`.

* A token is 32 random bytes (base64url, 43 characters). Only its SHA-256 is stored, so a copy
  of the ``tokens`` table opens no session. Tokens expire after ``token_ttl_s``; logout deletes
  the row.
* Passwords are verified with Argon2 on a worker thread (``PasswordHasher.averify``), never on the
  event loop. An unknown or disabled login is verified against the hasher's dummy hash, so it
  costs the same time as a known one and response timing does not reveal which logins exist.
* Every attempt is first checked against the :class:`LoginLimiter`; a locked login or address
  gets 429 even with the right password.
* A :class:`Principal` carries the facts the policy needs as of the request: a resident's
  memberships (in the same statement as the token) and a courier's company and the sites it
  serves (a second statement, for courier accounts only).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import bindparam, delete, select
from sqlmodel import col

from cloud_sync.service.errors import RateLimited, Unauthenticated
from cloud_sync.service.policy import MembershipFact, Principal, Role
from cloud_sync.service.ratelimit import LoginLimiter
from cloud_sync.service.tables import Account, Courier, CourierSite, Membership, Token, Unit

if TYPE_CHECKING:
    from cloud_sync.service.db import Database
    from cloud_sync.service.passwords import PasswordHasher
    from cloud_sync.service.state import Clock

__all__ = ["Authenticator", "IssuedToken", "hash_token", "new_token"]

log = structlog.get_logger(__name__)

# Built once: authentication runs on every request, and building and hashing a statement of
# four joined tables costs more than the query itself.
_PRINCIPAL_ROWS = (
    select(
        col(Account.id),
        col(Account.login),
        col(Account.role),
        col(Account.site_id),
        col(Account.resident_id),
        col(Account.disabled),
        col(Token.expires_at),
        col(Unit.id),
        col(Unit.label),
        col(Unit.building_id),
        col(Membership.valid_from),
        col(Membership.valid_until),
    )
    .join(Token, col(Token.account_id) == col(Account.id))
    .outerjoin(Membership, col(Membership.resident_id) == col(Account.resident_id))
    .outerjoin(Unit, col(Unit.id) == col(Membership.unit_id))
    .where(col(Token.token_hash) == bindparam("token_hash"))
    .order_by(col(Unit.label))
)
# A courier's company and the sites it serves: a second statement, for couriers only, so the
# statement every other request runs stays as it is. No courier row: no company and no sites.
_COURIER_ROWS = (
    select(col(Courier.company), col(CourierSite.site_id))
    .outerjoin(CourierSite, col(CourierSite.account_id) == col(Courier.account_id))
    .where(col(Courier.account_id) == bindparam("account_id"))
)
_TOKEN_BYTES = 32
_MAX_TOKEN_CHARS = 128


def new_token() -> str:
    """A fresh bearer token: 32 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def hash_token(token: str) -> str:
    """What the database stores for ``token``: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new session: the token (shown once), its expiry and the account's role."""

    token: str
    expires_at: int
    role: Role


class Authenticator:
    """Logs accounts in and out and authenticates bearer tokens."""

    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        limiter: LoginLimiter,
        clock: Clock,
        *,
        token_ttl_s: int,
    ) -> None:
        self._db = db
        self._hasher = hasher
        self.limiter = limiter
        self._clock = clock
        self._ttl_ms = token_ttl_s * 1000

    async def warm_up(self) -> None:
        """Make the hasher's dummy hash now, so the first unknown login is not the slowest."""
        await self._hasher.averify(None, "warm-up-password")

    async def login(self, login: str, password: str, client_ip: str) -> IssuedToken:
        """Verify a password and issue a token, or raise RateLimited / Unauthenticated."""
        wait = self.limiter.retry_after(login, client_ip)
        if wait is not None:
            log.info("login refused: rate limited", login=login, ip=client_ip)
            raise RateLimited(wait)
        async with self._db.session() as session:
            account = (
                await session.execute(select(Account).where(col(Account.login) == login))
            ).scalar_one_or_none()
        usable = account is not None and not account.disabled
        # None makes the hasher verify against its dummy hash: the same work as a real login.
        stored = account.password_hash if account is not None and usable else None
        ok = await self._hasher.averify(stored, password)
        if not (ok and usable and account is not None and account.id is not None):
            self.limiter.failed(login, client_ip)
            log.info("login failed", login=login, ip=client_ip)
            raise Unauthenticated("wrong login or password", code="invalid_credentials")
        self.limiter.succeeded(login)
        token = new_token()
        now = self._clock.now_ms()
        async with self._db.session() as session:
            session.add(
                Token(
                    token_hash=hash_token(token),
                    site_id=account.site_id,
                    account_id=account.id,
                    created_at=now,
                    expires_at=now + self._ttl_ms,
                )
            )
            await session.commit()
        log.info("login", account=account.id)
        return IssuedToken(token, now + self._ttl_ms, Role(account.role))

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller named by an ``Authorization: Bearer …`` header, or Unauthenticated."""
        token = _bearer(authorization)
        token_hash = hash_token(token)
        now = self._clock.now_ms()
        # One round trip: the account, its token's expiry and (for residents) each membership
        # with its unit, outer-joined so an account without memberships still yields a row.
        # (A courier's company and sites take a second one.)
        # One statement, so no transaction around it (no BEGIN/ROLLBACK round trips).
        async with self._db.autocommit() as conn:
            rows = (await conn.execute(_PRINCIPAL_ROWS, {"token_hash": token_hash})).all()
        if not rows:
            raise Unauthenticated("unknown or expired token")
        account_id, login, role_name, site_id, resident_id, disabled, expires_at = rows[0][:7]
        if expires_at <= now or disabled or account_id is None:
            raise Unauthenticated("unknown or expired token")
        try:
            role = Role(role_name)
        except ValueError as exc:
            raise Unauthenticated("account has no usable role") from exc
        company: str | None = None
        courier_sites: frozenset[int] = frozenset()
        if role is Role.COURIER:
            async with self._db.autocommit() as conn:
                found = (await conn.execute(_COURIER_ROWS, {"account_id": account_id})).all()
            if found:
                company = found[0][0]
                courier_sites = frozenset(site for _, site in found if site is not None)
        facts = tuple(
            MembershipFact(
                unit_id=unit_id,
                unit_label=label,
                building_id=building_id,
                valid_from=valid_from,
                valid_until=valid_until,
            )
            for *_, unit_id, label, building_id, valid_from, valid_until in rows
            if unit_id is not None
        )
        return Principal(
            account_id=account_id,
            login=login,
            role=role,
            site_id=site_id,
            resident_id=resident_id,
            token_hash=token_hash,
            at_ms=now,
            memberships=facts,
            company=company,
            courier_sites=courier_sites,
        )

    async def logout(self, principal: Principal) -> None:
        """End the session whose token authenticated ``principal``."""
        async with self._db.session() as session:
            await session.execute(
                delete(Token).where(col(Token.token_hash) == principal.token_hash)
            )
            await session.commit()


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("a bearer token is required")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
        raise Unauthenticated("a bearer token is required")
    return token
