"""Notification channels: the in-app row, the SMS adapter, the fan-out; bodies never hold a code."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlmodel import col, select

from cloud_sync.service import directory, provisioning
from cloud_sync.service.db import Connection, Database
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.notifications import (
    FORBIDDEN_BODY_KEYS,
    MAX_BODY_KEYS,
    PARCEL_WAITING,
    InAppChannel,
    Note,
    Notifier,
    SmsChannel,
    check_body,
    current_residents,
)
from cloud_sync.service.parcel_codes import pickup_code
from cloud_sync.service.tables import Notification, Parcel

T0 = 1_795_830_550_000


@dataclass
class RecordingSms:
    """A fake SMS provider: remembers what it was asked to send."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, phone: str, text: str) -> None:
        self.sent.append((phone, text))


@dataclass
class Recording:
    """A channel that records the notes it was given (to check the fan-out's order)."""

    name: str
    log: list[tuple[str, str]]

    async def send(self, conn: Connection, note: Note) -> None:
        self.log.append((self.name, note.kind))


class FixedClock:
    def now_ms(self) -> int:
        return T0


async def _waiting_parcel(db: Database, seeded: Any, *, state: str = "waiting") -> Parcel:
    async with db.session() as s:
        bank = await provisioning.create_locker_bank(
            s, seeded.site_id, seeded.gateway_id, f"bank-{uuid.uuid4().hex[:6]}", name="Lobby"
        )
        assert bank.id is not None
        parcel = Parcel(
            id=uuid.uuid4().hex,
            site_id=seeded.site_id,
            gateway_id=seeded.gateway_id,
            bank_id=bank.id,
            compartment=7,
            size="S",
            unit_id=seeded.unit1_id,
            unit_label="1-101",
            state=state,
            code_n=2,
            via="terminal",
            created_at=T0,
            deposited_at=T0,
            updated_at=T0,
        )
        s.add(parcel)
        await s.commit()
        await s.refresh(parcel)
    return parcel


def _note(seeded: Any, parcel: str, resident: int | None = None) -> Note:
    return Note(
        seeded.site_id,
        seeded.li_id if resident is None else resident,
        PARCEL_WAITING,
        {"parcel": parcel, "bank": "Lobby", "compartment": 7},
    )


async def _rows(db: Database, seeded: Any) -> list[Notification]:
    """The notifications, but the seeded parcel's."""
    async with db.session() as s:
        rows = (await s.exec(select(Notification).order_by(col(Notification.id)))).all()
    return [n for n in rows if n.body.get("parcel") != seeded.parcel_id]


# -- notes and bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(FORBIDDEN_BODY_KEYS))
def test_a_body_may_not_carry_a_code_or_personal_data(key: str) -> None:
    with pytest.raises(ValueError, match="may not carry"):
        Note(1, 1, PARCEL_WAITING, {"parcel": "x", key: "12345678"})


@pytest.mark.parametrize(
    "body",
    [
        {"Bad": 1},
        {"x" * 33: 1},
        {"flag": True},
        {"amount": 1.5},
        {"list": [1]},  # type: ignore[dict-item]
        {"text": "x" * 201},
        {f"k{i}": i for i in range(MAX_BODY_KEYS + 1)},
    ],
)
def test_a_body_is_small_and_flat(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="body"):
        check_body(body)


def test_a_kind_is_a_short_identifier() -> None:
    for kind in ("", "Parcel", "parcel waiting", "p" * 33):
        with pytest.raises(ValueError, match="kind"):
            Note(1, 1, kind, {})
    assert check_body({"parcel": "x", "compartment": 3, "bank": None}) == {
        "parcel": "x",
        "compartment": 3,
        "bank": None,
    }


# -- the in-app channel ----------------------------------------------------------------------------


async def test_in_app_notes_commit_and_roll_back_with_the_caller(db: Database, seeded: Any) -> None:
    channel = InAppChannel(FixedClock())
    async with db.begin() as conn:
        await channel.send(conn, _note(seeded, "a" * 32))
    async with db.session() as s:  # an ORM session works as well
        await channel.send(s, _note(seeded, "b" * 32, seeded.zhang_id))
        await s.commit()

    async def failing() -> None:
        async with db.begin() as conn:
            await channel.send(conn, _note(seeded, "c" * 32))
            raise RuntimeError("the change the note reports failed")

    with pytest.raises(RuntimeError):
        await failing()
    rows = await _rows(db, seeded)
    assert [(n.resident_id, n.kind, n.body, n.created_at, n.read_at) for n in rows] == [
        (
            seeded.li_id,
            PARCEL_WAITING,
            {"parcel": "a" * 32, "bank": "Lobby", "compartment": 7},
            T0,
            None,
        ),
        (
            seeded.zhang_id,
            PARCEL_WAITING,
            {"parcel": "b" * 32, "bank": "Lobby", "compartment": 7},
            T0,
            None,
        ),
    ]
    assert {n.site_id for n in rows} == {seeded.site_id}


# -- the SMS channel -------------------------------------------------------------------------------


async def test_an_sms_carries_the_code_but_nothing_is_stored(
    db: Database, seeded: Any, cloud_keys: CloudKeys
) -> None:
    parcel = await _waiting_parcel(db, seeded)
    provider = RecordingSms()
    sms = SmsChannel(provider, cloud_keys)
    async with db.begin() as conn:
        await sms.send(conn, _note(seeded, parcel.id))
    code = pickup_code(cloud_keys, parcel)
    [(phone, text)] = provider.sent
    assert phone == seeded.li_phone  # opened from the sealed directory
    assert "Lobby" in text
    assert "compartment 7" in text
    assert f"Pickup code: {code}." in text
    assert await _rows(db, seeded) == []
    # A session works as well; without the code the text says where, not how.
    async with db.session() as s:
        await SmsChannel(provider, cloud_keys, include_code=False).send(s, _note(seeded, parcel.id))
    assert code not in provider.sent[-1][1]
    assert "Lobby" in provider.sent[-1][1]


async def test_no_code_for_a_parcel_that_is_not_waiting(
    db: Database, seeded: Any, cloud_keys: CloudKeys
) -> None:
    parcel = await _waiting_parcel(db, seeded, state="picked_up")
    provider = RecordingSms()
    async with db.begin() as conn:
        await SmsChannel(provider, cloud_keys).send(conn, _note(seeded, parcel.id))
    [(_, text)] = provider.sent
    assert pickup_code(cloud_keys, parcel) not in text
    assert "code" not in text


async def test_an_erased_resident_gets_no_sms(
    db: Database, seeded: Any, cloud_keys: CloudKeys
) -> None:
    parcel = await _waiting_parcel(db, seeded)
    async with db.session() as s:
        await directory.erase_resident(s, cloud_keys, seeded.li_id)
        await s.commit()
    provider = RecordingSms()
    async with db.begin() as conn:
        await SmsChannel(provider, cloud_keys).send(conn, _note(seeded, parcel.id))
    assert provider.sent == []


async def test_other_kinds_get_a_generic_text(
    db: Database, seeded: Any, cloud_keys: CloudKeys
) -> None:
    provider = RecordingSms()
    async with db.begin() as conn:
        await SmsChannel(provider, cloud_keys, sender="Court").send(
            conn, Note(seeded.site_id, seeded.zhang_id, "notice.general", {"id": 3})
        )
    assert provider.sent == [
        (seeded.zhang_phone, "Court: you have a new message (notice.general).")
    ]


# -- the fan-out and the recipients ---------------------------------------------------------------


async def test_the_notifier_sends_through_every_channel_in_order(
    db: Database, seeded: Any, cloud_keys: CloudKeys
) -> None:
    parcel = await _waiting_parcel(db, seeded)
    calls: list[tuple[str, str]] = []
    provider = RecordingSms()
    notifier = Notifier(
        [
            Recording("first", calls),
            InAppChannel(FixedClock()),
            SmsChannel(provider, cloud_keys),
            Recording("last", calls),
        ]
    )
    async with db.begin() as conn:
        await notifier.notify_all(
            conn, [_note(seeded, parcel.id), _note(seeded, parcel.id, seeded.zhang_id)]
        )
    assert calls == [("first", PARCEL_WAITING), ("last", PARCEL_WAITING)] * 2
    assert [n.resident_id for n in await _rows(db, seeded)] == [seeded.li_id, seeded.zhang_id]
    assert [phone for phone, _ in provider.sent] == [seeded.li_phone, seeded.zhang_phone]


async def test_current_residents_are_the_valid_members(
    db: Database, seeded: Any, cloud_keys: CloudKeys
) -> None:
    async with db.begin() as conn:
        assert await current_residents(conn, seeded.unit1_id, 2**52) == [seeded.li_id]
        assert await current_residents(conn, seeded.unit2_id, 2**52) == [seeded.zhang_id]
        assert await current_residents(conn, seeded.unit1_id, 0) == []  # before it began
    async with db.session() as s:
        await directory.erase_resident(s, cloud_keys, seeded.li_id)
        await s.commit()
    async with db.begin() as conn:
        assert await current_residents(conn, seeded.unit1_id, 2**52) == []


# -- the resident's inbox over the API -------------------------------------------------------------


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _add_note(db: Database, seeded: Any, resident: int, parcel: str) -> int:
    note = Notification(
        site_id=seeded.site_id,
        resident_id=resident,
        kind=PARCEL_WAITING,
        body={"parcel": parcel, "bank": "Lobby", "compartment": 3},
        created_at=T0,
    )
    async with db.session() as s:
        s.add(note)
        await s.commit()
        await s.refresh(note)
    assert note.id is not None
    return note.id


async def test_a_resident_marks_her_own_notes_read_once(
    make_api: Any, login: Any, seeded: Any, db: Database, fake_clock: Any
) -> None:
    api = await make_api(clock=fake_clock)
    li, zhang = await login(api, "li"), await login(api, "zhang")
    first = await _add_note(db, seeded, seeded.li_id, "a" * 32)
    second = await _add_note(db, seeded, seeded.li_id, "b" * 32)
    theirs = await _add_note(db, seeded, seeded.zhang_id, "c" * 32)
    listed = await _json(await api.get("/api/v1/notifications", headers=li), 200)
    assert listed["unread"] == 3  # the seeded parcel's note and these two
    assert [n["read_at"] for n in listed["notifications"]] == [None, None, None]

    read_at = fake_clock.now_ms()
    marked = await _json(await api.post(f"/api/v1/notifications/{first}/read", headers=li), 200)
    assert (marked["id"], marked["body"]["parcel"], marked["read_at"]) == (first, "a" * 32, read_at)
    # Again, later: nothing changes (the first read is kept).
    fake_clock.advance(60_000)
    again = await _json(await api.post(f"/api/v1/notifications/{first}/read", headers=li), 200)
    assert again == marked
    listed = await _json(await api.get("/api/v1/notifications?limit=2", headers=li), 200)
    assert [(n["id"], n["read_at"]) for n in listed["notifications"]] == [
        (second, None),
        (first, read_at),
    ]
    assert listed["unread"] == 2  # of all pages, not only this one

    # Another resident's note is as missing as one that does not exist, and stays unread.
    denied = await api.post(f"/api/v1/notifications/{theirs}/read", headers=li)
    missing = await api.post("/api/v1/notifications/999999999/read", headers=li)
    assert denied.status == missing.status == 404
    assert await denied.json() == await missing.json()
    assert (await _json(await api.get("/api/v1/notifications", headers=zhang), 200))["unread"] == 1
    assert (await api.post(f"/api/v1/notifications/{first}/read", headers=zhang)).status == 404
    engineer = await login(api, "engineer")
    assert (await api.post(f"/api/v1/notifications/{first}/read", headers=engineer)).status == 404
    # Ids that cannot name a note: refused before any lookup.
    for bad in ("0", "-1", "abc", "1" * 17, str(2**53)):
        resp = await api.post(f"/api/v1/notifications/{bad}/read", headers=li)
        assert resp.status == 404, bad
    async with db.session() as s:
        rows = (await s.exec(select(Notification).where(col(Notification.id) == theirs))).all()
    assert [n.read_at for n in rows] == [None]
