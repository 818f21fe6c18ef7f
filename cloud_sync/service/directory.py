"""Residents' personal data: sealed at rest, found by blind index, erased by destroying a key.

Each resident gets a random data key, stored only wrapped by the cloud's key-encryption key
(subject ``resident:{id}``). Their name and phone number are sealed under it, each bound to its
place (``residents``/``name``/``{id}``), so a value copied into another row or column does not open.
The phone number is also stored as a blind index (keyed HMAC of the normalised number) for
exact-match lookup. Erasure drops the wrapped key together with every sealed value and the index;
whatever else was sealed under that key (audit details) can then never be opened again.

Nothing here commits: the caller owns the transaction. Error messages never carry the personal
data they are about, so they can be logged.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from cloud_sync.service import audit
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.tables import Account, Membership, Resident
from trust import DataKey, Place, open_sealed, seal

__all__ = [
    "MAX_NAME_CHARS",
    "InvalidName",
    "InvalidPhone",
    "ResidentNotFound",
    "ResidentProfile",
    "create_resident",
    "erase_resident",
    "find_by_phone",
    "mask_name",
    "mask_phone",
    "normalize_phone",
    "read_profile",
    "resident_key",
    "rotate_keys",
]

MAX_NAME_CHARS = 100
_PHONE_DIGITS = (6, 15)  # shortest local extension we accept … E.164's maximum
_PHONE_SEPARATORS = str.maketrans("", "", " -().\u00a0")
_ROTATE_BATCH = 500


class InvalidPhone(ValueError):
    """Not a phone number. The message never repeats the input."""


class InvalidName(ValueError):
    """Not a usable name. The message never repeats the input."""


class ResidentNotFound(LookupError):
    """No resident with this id."""

    def __init__(self, resident_id: int) -> None:
        super().__init__(f"no resident {resident_id}")
        self.resident_id = resident_id


@dataclass(frozen=True, slots=True)
class ResidentProfile:
    """A resident's personal data, opened. Never log it; mask it for display."""

    name: str
    phone: str

    def __repr__(self) -> str:
        # Keep personal data out of tracebacks and logs that print the object.
        return f"ResidentProfile(name={mask_name(self.name)!r}, phone={mask_phone(self.phone)!r})"


def normalize_phone(raw: str) -> str:
    """The canonical digits of a phone number; China's +86 / 0086 prefix dropped from mobiles.

    Full-width digits (from Chinese input methods) count as digits; spaces, dashes, dots and
    parentheses are ignored, as is one leading ``+``. Anything else raises :class:`InvalidPhone`.
    """
    text = unicodedata.normalize("NFKC", raw).strip().translate(_PHONE_SEPARATORS)
    text = text.removeprefix("+")
    if not text or not all("0" <= c <= "9" for c in text):
        raise InvalidPhone("a phone number has only digits, spaces, dashes and a leading +")
    for prefix in ("0086", "86"):
        rest = text.removeprefix(prefix)
        if rest != text and _is_cn_mobile(rest):
            text = rest
            break
    if not _PHONE_DIGITS[0] <= len(text) <= _PHONE_DIGITS[1]:
        raise InvalidPhone(f"a phone number has {_PHONE_DIGITS[0]} to {_PHONE_DIGITS[1]} digits")
    return text


def _is_cn_mobile(digits: str) -> bool:
    # Mainland mobiles: 11 digits, 1 then 3-9.
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


def mask_phone(phone: str) -> str:
    """``13812348000`` → ``138****8000``: the first three and last four digits stay."""
    if len(phone) >= 8:
        return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
    return "*" * max(len(phone) - 2, 0) + phone[-2:]


def mask_name(name: str) -> str:
    """``李小红`` → ``李**``: the first character stays (none of a one-character name)."""
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _subject(resident_id: int) -> str:
    return f"resident:{resident_id}"


def _place(resident_id: int, column: str) -> Place:
    return Place("residents", column, str(resident_id))


def _clean_name(name: str) -> str:
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned or len(cleaned) > MAX_NAME_CHARS or not cleaned.isprintable():
        raise InvalidName(f"a name has 1 to {MAX_NAME_CHARS} printable characters")
    return cleaned


async def create_resident(
    session: AsyncSession,
    keys: CloudKeys,
    site_id: int,
    name: str,
    phone: str,
    *,
    actor: str = "system",
) -> Resident:
    """Add a resident with a fresh data key; their name and phone are stored sealed only."""
    clean_name = _clean_name(name)
    clean_phone = normalize_phone(phone)
    resident = Resident(site_id=site_id, created_at=_now_ms())
    session.add(resident)
    await session.flush()  # the id is part of the key's subject and of each value's place
    rid = _id(resident)
    data_key, raw = DataKey.generate()
    resident.wrapped_key = keys.keyring.wrap(raw, _subject(rid))
    resident.name_sealed = seal(data_key, clean_name, _place(rid, "name"))
    resident.phone_sealed = seal(data_key, clean_phone, _place(rid, "phone"))
    resident.phone_index = keys.blind.digest("phone", clean_phone)
    await session.flush()
    await audit.append(
        session, site_id=site_id, actor=actor, action="resident.create", obj=_subject(rid)
    )
    return resident


def _id(resident: Resident) -> int:
    if resident.id is None:
        raise RuntimeError("resident has no id before flush")
    return resident.id


async def resident_key(session: AsyncSession, keys: CloudKeys, resident_id: int) -> DataKey | None:
    """The resident's data key (to seal or open their audit details), ``None`` once erased."""
    resident = await session.get(Resident, resident_id)
    if resident is None or resident.wrapped_key is None:
        return None
    return keys.keyring.unwrap(resident.wrapped_key, _subject(resident_id))


async def read_profile(
    session: AsyncSession, keys: CloudKeys, resident_id: int
) -> ResidentProfile | None:
    """The resident's name and phone, opened; ``None`` when erased or absent.

    Raises :class:`trust.SealError` when a stored value was tampered with or moved.
    """
    resident = await session.get(Resident, resident_id)
    if resident is None or resident.wrapped_key is None:
        return None
    if resident.name_sealed is None or resident.phone_sealed is None:
        return None
    key = keys.keyring.unwrap(resident.wrapped_key, _subject(resident_id))
    return ResidentProfile(
        name=open_sealed(key, resident.name_sealed, _place(resident_id, "name")),
        phone=open_sealed(key, resident.phone_sealed, _place(resident_id, "phone")),
    )


async def find_by_phone(
    session: AsyncSession, keys: CloudKeys, site_id: int, phone: str
) -> list[Resident]:
    """The site's (not erased) residents with this phone number, by blind index."""
    index = keys.blind.digest("phone", normalize_phone(phone))
    found = await session.exec(
        select(Resident)
        .where(
            col(Resident.site_id) == site_id,
            col(Resident.phone_index) == index,
            col(Resident.erased_at).is_(None),
        )
        .order_by(col(Resident.id))
    )
    return list(found.all())


async def erase_resident(
    session: AsyncSession, keys: CloudKeys, resident_id: int, *, actor: str = "system"
) -> None:
    """Crypto-shred a resident: key, sealed values and index gone; memberships end; accounts off.

    Idempotent: erasing an erased resident changes nothing. (Destroying a key needs no key:
    ``keys`` is unused, and kept so every operation here has the same shape.)
    """
    resident = await session.get(Resident, resident_id)
    if resident is None:
        raise ResidentNotFound(resident_id)
    if resident.erased_at is not None:
        return
    now = _now_ms()
    resident.wrapped_key = None
    resident.name_sealed = None
    resident.phone_sealed = None
    resident.phone_index = None
    resident.erased_at = now
    await session.exec(
        update(Membership)
        .where(
            col(Membership.resident_id) == resident_id,
            (col(Membership.valid_until).is_(None)) | (col(Membership.valid_until) > now),
        )
        .values(valid_until=now)
    )
    # An erased resident's login must not outlive them.
    await session.exec(
        update(Account).where(col(Account.resident_id) == resident_id).values(disabled=True)
    )
    await session.flush()
    await audit.append(
        session,
        site_id=resident.site_id,
        actor=actor,
        action="resident.erase",
        obj=_subject(resident_id),
    )


async def rotate_keys(session: AsyncSession, keys: CloudKeys, *, limit: int | None = None) -> int:
    """Re-wrap data keys not yet under the current KEK; the number re-wrapped.

    Sealed values are untouched. With ``limit``, stops after that many so a large rotation can be
    spread over several short transactions: call until it returns 0.
    """
    ring = keys.keyring
    done = 0
    after = 0
    while limit is None or done < limit:
        batch = (
            await session.exec(
                select(Resident)
                .where(col(Resident.id) > after, col(Resident.wrapped_key).is_not(None))
                .order_by(col(Resident.id))
                .limit(_ROTATE_BATCH)
            )
        ).all()
        if not batch:
            break
        for resident in batch:
            rid = after = _id(resident)
            wrapped = resident.wrapped_key
            if wrapped is None or ring.wrapped_by(wrapped) == ring.current:
                continue
            resident.wrapped_key = ring.rewrap(wrapped, _subject(rid))
            done += 1
            if done == limit:
                break
        await session.flush()  # one batch of UPDATEs at a time, not the whole table in memory
    return done
