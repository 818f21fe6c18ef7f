"""The inbox's parcel and locker effects (docs/parcels.md "Events"), on SQLite and PostgreSQL.

The events are built exactly as the gateway builds them (gateway/parcels.py, locker_banks.py).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import LargeBinary, String, Text, func
from sqlalchemy import select as sa_select
from sqlalchemy.types import JSON
from sqlmodel import SQLModel, col, select

from cloud_sync.protocol import CommandStatus, Event, EventBatch
from cloud_sync.protocol.pickup_code import derive_code
from cloud_sync.service import directory, provisioning
from cloud_sync.service.db import Database
from cloud_sync.service.expiry import ExpirySweeper
from cloud_sync.service.inbox import _PARCEL_FROM, _PLACEABLE, PARCEL_RANK, Inbox
from cloud_sync.service.keys import CloudKeys
from cloud_sync.service.parcel_codes import pickup_code
from cloud_sync.service.tables import (
    PARCEL_STATES,
    Alarm,
    Command,
    Compartment,
    GatewayEvent,
    LockerBank,
    Membership,
    Notification,
    Parcel,
)
from cloud_sync.service.waiters import CommandWaiters

T0 = 1_795_830_550_000
HOUR = 3_600_000


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> str:
    """Both engines: a SQLite file, and PostgreSQL (the suite's usual database when running)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}"
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL is not running")
    return database_url


class Gw:
    """Builds one gateway's batches, numbering events as a gateway's outbox does."""

    def __init__(self, inbox: Inbox, gateway_id: str) -> None:
        self.inbox = inbox
        self.gateway_id = gateway_id
        self.seq = 0

    def event(self, type_: str, data: dict[str, Any], ts: int = T0) -> Event:
        self.seq += 1
        return Event(uuid.uuid4().hex, self.seq, ts, type_, data)

    async def send(self, *events: Event) -> int:
        return (await self.inbox.store(EventBatch(self.gateway_id, tuple(events)))).inserted


@dataclass(frozen=True)
class Lockers:
    """The seeded community: its locker bank "A" and a courier serving the site."""

    seeded: Any
    bank_id: int
    courier_id: int


@pytest.fixture
async def lockers(seeded: Any) -> Lockers:
    return Lockers(seeded, seeded.bank_id, seeded.logins["courier"].account_id)


@pytest.fixture
async def gw(db: Database, lockers: Lockers, fake_clock: Any) -> Gw:
    return Gw(Inbox(db, fake_clock), lockers.seeded.gateway_id)


def pid() -> str:
    return uuid.uuid4().hex


def deposited(parcel: str, **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "parcel": parcel,
        "bank": "A",
        "compartment": 2,
        "size": "M",
        "unit": "1-101",
        "code_n": 0,
        "deposited_at": T0,
        "via": "terminal",
    }
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


def picked_up(parcel: str, **kw: Any) -> dict[str, Any]:
    data = {
        "parcel": parcel,
        "bank": "A",
        "compartment": 2,
        "via": "code",
        "at": T0 + 13 * HOUR,
        "fee_cents": 50,
        "fee_state": "owed",
    }
    data.update(kw)
    return data


def opened(parcel: str, no: int, purpose: str = "deposit") -> dict[str, Any]:
    return {"parcel": parcel, "bank": "A", "compartment": no, "for": purpose}


async def _parcel(db: Database, parcel: str) -> Parcel | None:
    async with db.session() as s:
        return await s.get(Parcel, parcel)


async def _notes(db: Database, lockers: Lockers) -> list[Notification]:
    """The notifications of the seeded site, but the seeded parcel's."""
    async with db.session() as s:
        rows = (
            await s.exec(
                select(Notification)
                .where(col(Notification.site_id) == lockers.seeded.site_id)
                .order_by(col(Notification.id))
            )
        ).all()
    return [n for n in rows if n.body.get("parcel") != lockers.seeded.parcel_id]


async def _request(
    db: Database, lockers: Lockers, *, unit_id: int | None = None, status: str = "sent"
) -> tuple[str, str]:
    """A parcel the cloud asked the gateway for (as the deposit route makes it): (parcel, cmd)."""
    s_ = lockers.seeded
    parcel, cmd = pid(), pid()
    async with db.session() as s:
        s.add(
            Parcel(
                id=parcel,
                site_id=s_.site_id,
                gateway_id=s_.gateway_id,
                bank_id=lockers.bank_id,
                size="M",
                unit_id=s_.unit1_id if unit_id is None else unit_id,
                unit_label="1-101",
                courier_account_id=lockers.courier_id,
                company="SF",
                tracking="SF1234567890",
                state="requested",
                created_at=T0 - 1000,
                updated_at=T0 - 1000,
            )
        )
        await s.flush()
        s.add(
            Command(
                id=cmd,
                site_id=s_.site_id,
                gateway_id=s_.gateway_id,
                target="A",
                parcel_id=parcel,
                account_id=lockers.courier_id,
                action="parcel.deposit",
                seq=None,
                status=status,
                issued_at=T0 - 1000,
                expires_at=T0 + 30_000,
                updated_at=T0 - 1000,
            )
        )
        await s.commit()
    return parcel, cmd


# -- parcel.deposited ------------------------------------------------------------------------------


async def test_a_terminal_deposit_creates_the_parcel_and_notifies_the_unit(
    gw: Gw, db: Database, lockers: Lockers, fake_clock: Any
) -> None:
    s_ = lockers.seeded
    parcel = pid()
    data = deposited(parcel, courier=lockers.courier_id, company="SF Express", code_n=3)
    assert await gw.send(gw.event("parcel.deposited", data)) == 1
    row = await _parcel(db, parcel)
    assert row is not None
    assert (
        row.site_id,
        row.gateway_id,
        row.bank_id,
        row.compartment,
        row.size,
        row.unit_id,
        row.unit_label,
        row.courier_account_id,
        row.company,
        row.state,
        row.code_n,
        row.via,
        row.deposited_at,
        row.picked_up_at,
        row.fee_cents,
        row.created_at,
    ) == (
        s_.site_id,
        s_.gateway_id,
        lockers.bank_id,
        2,
        "M",
        s_.unit1_id,
        "1-101",
        lockers.courier_id,
        "SF Express",
        "waiting",
        3,
        "terminal",
        T0,
        None,
        None,
        fake_clock.now,
    )
    [note] = await _notes(db, lockers)
    assert (note.site_id, note.resident_id, note.kind, note.read_at) == (
        s_.site_id,
        s_.li_id,
        "parcel.waiting",
        None,
    )
    assert note.body == {"parcel": parcel, "bank": "Building 1 lobby", "compartment": 2}
    assert note.created_at == fake_clock.now


async def test_a_requested_parcel_becomes_waiting_once(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel, _ = await _request(db, lockers)
    first = gw.event("parcel.deposited", deposited(parcel, via="command", code_n=1))
    assert await gw.send(first) == 1
    assert await gw.send(first) == 0  # a duplicate by id: no effect at all
    # The same report under another event id (never sent by a gateway, but harmless).
    await gw.send(gw.event("parcel.deposited", deposited(parcel, via="command", code_n=5)))
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.code_n, row.via, row.compartment, row.deposited_at) == (
        "waiting",
        1,
        "command",
        2,
        T0,
    )
    # What the cloud knew stays: tracking, courier, the unit.
    assert (row.tracking, row.courier_account_id, row.unit_id) == (
        "SF1234567890",
        lockers.courier_id,
        lockers.seeded.unit1_id,
    )
    assert len(await _notes(db, lockers)) == 1


async def test_a_terminal_deposit_for_an_unknown_unit_is_kept_without_notifying(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel = pid()
    await gw.send(gw.event("parcel.deposited", deposited(parcel, unit="9-909")))
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.unit_id, row.unit_label, row.state) == (None, "9-909", "waiting")
    assert await _notes(db, lockers) == []


async def test_a_deposit_in_an_unknown_bank_registers_the_bank(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel = pid()
    await gw.send(gw.event("parcel.deposited", deposited(parcel, bank="B")))
    async with db.session() as s:
        bank = (await s.exec(select(LockerBank).where(col(LockerBank.local_id) == "B"))).one()
    assert (bank.site_id, bank.gateway_id, bank.name, bank.building_id) == (
        lockers.seeded.site_id,
        lockers.seeded.gateway_id,
        "",
        None,
    )
    row = await _parcel(db, parcel)
    assert row is not None
    assert row.bank_id == bank.id
    [note] = await _notes(db, lockers)
    assert note.body["bank"] == "B"  # no name: the bank's id


@pytest.mark.parametrize("who", ["outsider", "staff", "resident", "unknown"])
async def test_the_courier_is_kept_only_if_it_serves_the_site(
    gw: Gw, db: Database, lockers: Lockers, who: str, site_factory: Any
) -> None:
    other = await site_factory(prefix="o-", name="Other Court")
    account = {
        "outsider": other.logins["courier"].account_id,  # serves the other site only
        "staff": lockers.seeded.logins["engineer"].account_id,
        "resident": lockers.seeded.logins["li"].account_id,
        "unknown": 10**9,
    }[who]
    parcel = pid()
    await gw.send(gw.event("parcel.deposited", deposited(parcel, courier=account, company="X")))
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.courier_account_id, row.company, row.state) == (None, "X", "waiting")


async def test_only_current_members_of_the_unit_are_notified(
    gw: Gw, db: Database, lockers: Lockers, cloud_keys: CloudKeys, fake_clock: Any
) -> None:
    s_ = lockers.seeded
    now = fake_clock.now
    async with db.session() as s:
        wang = await directory.create_resident(s, cloud_keys, s_.site_id, "王芳", "13700001111")
        zhao = await directory.create_resident(s, cloud_keys, s_.site_id, "赵磊", "13700002222")
        gone = await directory.create_resident(s, cloud_keys, s_.site_id, "钱多", "13700003333")
        assert wang.id
        assert zhao.id
        assert gone.id
        await provisioning.add_membership(s, s_.site_id, wang.id, s_.unit1_id, "member")
        # Zhang moved out of 1-101; Zhao moves in only next week; Qian is erased.
        s.add(
            Membership(
                site_id=s_.site_id,
                resident_id=s_.zhang_id,
                unit_id=s_.unit1_id,
                relation="tenant",
                valid_from=now - 100 * HOUR,
                valid_until=now - HOUR,
            )
        )
        s.add(
            Membership(
                site_id=s_.site_id,
                resident_id=zhao.id,
                unit_id=s_.unit1_id,
                relation="tenant",
                valid_from=now + 168 * HOUR,
            )
        )
        await provisioning.add_membership(s, s_.site_id, gone.id, s_.unit1_id, "member")
        await directory.erase_resident(s, cloud_keys, gone.id)
        # A membership that ends in the future is current.
        still = await s.get(Membership, (await _membership_id(s, s_.li_id, s_.unit1_id)))
        assert still is not None
        still.valid_until = now + HOUR
        await s.commit()
    fake_clock.advance(60_000)  # past the wall-clock start of the memberships added above
    await gw.send(gw.event("parcel.deposited", deposited(pid())))
    assert sorted(n.resident_id for n in await _notes(db, lockers)) == sorted([s_.li_id, wang.id])


async def _membership_id(s: Any, resident_id: int, unit_id: int) -> int:
    row = (
        await s.exec(
            select(Membership.id).where(
                col(Membership.resident_id) == resident_id, col(Membership.unit_id) == unit_id
            )
        )
    ).one()
    return int(row)


# -- the other parcel events -------------------------------------------------------------------


async def test_a_pickup_records_how_when_and_the_fee(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel = pid()
    await gw.send(gw.event("parcel.deposited", deposited(parcel)))
    await gw.send(gw.event("parcel.picked_up", picked_up(parcel, via="qr")))
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.via, row.picked_up_at, row.fee_cents, row.fee_state) == (
        "picked_up",
        "qr",
        T0 + 13 * HOUR,
        50,
        "owed",
    )
    assert row.deposited_at == T0
    # A second pickup report (another event) changes nothing.
    await gw.send(gw.event("parcel.picked_up", picked_up(parcel, via="remote", fee_cents=0)))
    again = await _parcel(db, parcel)
    assert again is not None
    assert (again.via, again.fee_cents) == ("qr", 50)


async def test_a_pickup_before_its_deposit_ends_picked_up_and_never_waiting(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel, _ = await _request(db, lockers)
    dep = gw.event("parcel.deposited", deposited(parcel, via="command"))
    pick = gw.event("parcel.picked_up", picked_up(parcel))
    await gw.send(pick)  # the later event first (two instances, batches out of order)
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.compartment, row.deposited_at) == ("picked_up", 2, None)
    await gw.send(dep)
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.deposited_at, row.picked_up_at, row.fee_cents) == (
        "picked_up",
        T0,
        T0 + 13 * HOUR,
        50,
    )
    assert await _notes(db, lockers) == []  # nobody is told of a parcel that is gone already


async def test_a_terminal_deposit_whose_pickup_came_first_ends_picked_up(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel = pid()
    dep = gw.event("parcel.deposited", deposited(parcel))
    pick = gw.event("parcel.picked_up", picked_up(parcel, via="remote"))
    await gw.send(pick)
    assert await _parcel(db, parcel) is None  # nothing to attach it to yet: stored only
    await gw.send(dep)
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.via, row.deposited_at, row.picked_up_at) == (
        "picked_up",
        "remote",
        T0,
        T0 + 13 * HOUR,
    )
    assert await _notes(db, lockers) == []


async def test_a_stored_later_event_that_does_not_apply_leaves_the_deposit_waiting(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel = pid()
    dep = gw.event("parcel.deposited", deposited(parcel))
    # A cancel of a parcel that is deposited means nothing (the gateway cancels only deposits
    # under way): stored first, it must neither win nor keep the recipient from being told.
    cancel = gw.event("parcel.cancelled", {"parcel": parcel, "bank": "A", "reason": "courier"})
    await gw.send(cancel)
    await gw.send(dep)
    row = await _parcel(db, parcel)
    assert row is not None
    assert row.state == "waiting"
    assert len(await _notes(db, lockers)) == 1


async def test_a_deposit_and_its_pickup_in_one_batch(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel = pid()
    await gw.send(
        gw.event("parcel.deposited", deposited(parcel)),
        gw.event("parcel.picked_up", picked_up(parcel)),
    )
    row = await _parcel(db, parcel)
    assert row is not None
    assert row.state == "picked_up"
    assert await _notes(db, lockers) == []


async def test_an_empty_deposit_is_retried_or_cancelled(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    retried, _ = await _request(db, lockers)
    cancelled, _ = await _request(db, lockers)
    empty = {"bank": "A", "compartment": 2}
    await gw.send(
        gw.event("parcel.deposit_empty", {"parcel": retried, **empty}),
        gw.event("parcel.deposit_empty", {"parcel": cancelled, **empty, "compartment": 3}),
    )
    for parcel, no in ((retried, 2), (cancelled, 3)):
        row = await _parcel(db, parcel)
        assert row is not None
        assert (row.state, row.compartment) == ("empty", no)
    await gw.send(gw.event("parcel.deposited", deposited(retried, via="command")))
    await gw.send(
        gw.event("parcel.cancelled", {"parcel": cancelled, "bank": "A", "reason": "timeout"})
    )
    waiting, gone = await _parcel(db, retried), await _parcel(db, cancelled)
    assert waiting is not None
    assert gone is not None
    assert waiting.state == "waiting"
    assert (gone.state, gone.reason) == ("cancelled", "timeout")
    # Late or impossible reports never move a parcel back or sideways.
    await gw.send(
        gw.event("parcel.deposit_empty", {"parcel": retried, **empty}),
        gw.event("parcel.cancelled", {"parcel": retried, "bank": "A", "reason": "courier"}),
        gw.event("parcel.deposit_empty", {"parcel": cancelled, **empty}),
        gw.event("parcel.deposited", deposited(cancelled)),
    )
    waiting, gone = await _parcel(db, retried), await _parcel(db, cancelled)
    assert waiting is not None
    assert gone is not None
    assert (waiting.state, gone.state) == ("waiting", "cancelled")
    assert len(await _notes(db, lockers)) == 1  # the retried deposit's


# -- parcel.opened ---------------------------------------------------------------------------------


async def _where(db: Database, parcel: str) -> tuple[str, int | None]:
    row = await _parcel(db, parcel)
    assert row is not None
    return row.state, row.compartment


async def test_an_open_deposit_shows_its_compartment_until_the_parcel_moves_on(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel, cmd = await _request(db, lockers)
    assert await _where(db, parcel) == ("requested", None)
    await gw.send(
        gw.event("command.status", {"command": cmd, "status": "acknowledged"}),
        gw.event("parcel.opened", opened(parcel, 5)),
        gw.event("command.status", {"command": cmd, "status": "opened"}),
    )
    assert await _where(db, parcel) == ("requested", 5)
    assert await _notes(db, lockers) == []  # nobody is told before the door shuts on a parcel

    # Closed empty; the retry found 5 jammed and opened 6: the newest compartment wins.
    await gw.send(
        gw.event("parcel.deposit_empty", {"parcel": parcel, "bank": "A", "compartment": 5})
    )
    assert await _where(db, parcel) == ("empty", 5)
    await gw.send(gw.event("parcel.opened", opened(parcel, 6, "reopen")))
    assert await _where(db, parcel) == ("empty", 6)
    await gw.send(gw.event("parcel.deposited", deposited(parcel, compartment=6, via="command")))
    assert await _where(db, parcel) == ("waiting", 6)

    # Once waiting (and later), no parcel.opened changes it, however late or repeated.
    late = gw.event("parcel.opened", opened(parcel, 9, "reopen"))
    await gw.send(late)
    await gw.send(late)
    assert await _where(db, parcel) == ("waiting", 6)
    await gw.send(gw.event("parcel.picked_up", picked_up(parcel, compartment=6)))
    await gw.send(gw.event("parcel.opened", opened(parcel, 3)))
    assert await _where(db, parcel) == ("picked_up", 6)


async def test_an_older_compartment_applied_late_never_replaces_a_newer_one(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel, _ = await _request(db, lockers)
    first = gw.event("parcel.opened", opened(parcel, 5))
    empty = gw.event("parcel.deposit_empty", {"parcel": parcel, "bank": "A", "compartment": 5})
    again = gw.event("parcel.opened", opened(parcel, 6, "reopen"))
    # Two service instances handled the gateway's batches in the reverse order.
    await gw.send(again)
    assert await _where(db, parcel) == ("requested", 6)
    await gw.send(empty)
    assert await _where(db, parcel) == ("empty", 6)
    await gw.send(first)
    assert await _where(db, parcel) == ("empty", 6)


async def test_an_open_names_no_parcel_the_cloud_does_not_hold(
    gw: Gw, db: Database, lockers: Lockers, site_factory: Any, fake_clock: Any
) -> None:
    terminal = pid()  # a deposit at the terminal: the cloud learns of it once it is deposited
    await gw.send(gw.event("parcel.opened", opened(terminal, 4)))
    assert await _parcel(db, terminal) is None
    ours, _ = await _request(db, lockers)
    other = await site_factory(prefix="s4-", name="Fourth Court")
    theirs = Gw(Inbox(db, fake_clock), other.gateway_id)
    await theirs.send(theirs.event("parcel.opened", opened(ours, 4)))
    assert await _where(db, ours) == ("requested", None)


async def test_a_retrieval_is_recorded(gw: Gw, db: Database, lockers: Lockers) -> None:
    parcel = pid()
    await gw.send(gw.event("parcel.deposited", deposited(parcel, courier=lockers.courier_id)))
    at = T0 + 73 * HOUR
    await gw.send(
        gw.event(
            "parcel.retrieved",
            {
                "parcel": parcel,
                "bank": "A",
                "compartment": 2,
                "courier": lockers.courier_id,
                "at": at,
            },
        )
    )
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.via, row.picked_up_at, row.fee_cents) == (
        "retrieved",
        "courier",
        at,
        None,
    )
    await gw.send(gw.event("parcel.picked_up", picked_up(parcel)))
    row = await _parcel(db, parcel)
    assert row is not None
    assert row.state == "retrieved"


async def test_another_gateways_parcel_is_not_touched(
    db: Database, lockers: Lockers, site_factory: Any, fake_clock: Any, gw: Gw
) -> None:
    parcel = pid()
    await gw.send(gw.event("parcel.deposited", deposited(parcel)))
    other = await site_factory(prefix="s3-", name="Third Court")
    theirs = Gw(Inbox(db, fake_clock), other.gateway_id)
    await theirs.send(
        theirs.event("parcel.picked_up", picked_up(parcel)),
        theirs.event("parcel.deposited", deposited(parcel, code_n=9)),
    )
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.gateway_id, row.code_n) == ("waiting", lockers.seeded.gateway_id, 0)


BAD_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "parcel id uppercase": ("parcel.deposited", {"parcel": "A" * 32}),
    "parcel id short": ("parcel.deposited", {"parcel": "a" * 31}),
    "bank not an id": ("parcel.deposited", {"bank": "A B"}),
    "compartment 0": ("parcel.deposited", {"compartment": 0}),
    "compartment 256": ("parcel.deposited", {"compartment": 256}),
    "compartment a bool": ("parcel.deposited", {"compartment": True}),
    "size XL": ("parcel.deposited", {"size": "XL"}),
    "unit empty": ("parcel.deposited", {"unit": ""}),
    "unit long": ("parcel.deposited", {"unit": "1" * 41}),
    "unit control char": ("parcel.deposited", {"unit": "1\n101"}),
    "code_n negative": ("parcel.deposited", {"code_n": -1}),
    "code_n a string": ("parcel.deposited", {"code_n": "0"}),
    "code_n 1000": ("parcel.deposited", {"code_n": 1000}),
    "deposited_at string": ("parcel.deposited", {"deposited_at": str(T0)}),
    "via unknown": ("parcel.deposited", {"via": "drone"}),
    "via a list": ("parcel.deposited", {"via": ["terminal"]}),
    "courier zero": ("parcel.deposited", {"courier": 0}),
    "courier a string": ("parcel.deposited", {"courier": "7"}),
    "company long": ("parcel.deposited", {"company": "x" * 65}),
    "pickup via unknown": ("parcel.picked_up", {"via": "magic"}),
    "pickup via an object": ("parcel.picked_up", {"via": {"code": 1}}),
    "pickup fee negative": ("parcel.picked_up", {"fee_cents": -1}),
    "pickup fee float": ("parcel.picked_up", {"fee_cents": 0.5}),
    "pickup fee_state long": ("parcel.picked_up", {"fee_state": "owed_owed_"}),
    "pickup at missing": ("parcel.picked_up", {"at": None}),
    "cancel reason missing": ("parcel.cancelled", {"reason": None}),
    "cancel reason text": ("parcel.cancelled", {"reason": "Courier gave up"}),
    "empty without compartment": ("parcel.deposit_empty", {"compartment": None}),
    "opened parcel uppercase": ("parcel.opened", {"parcel": "A" * 32}),
    "opened bank not an id": ("parcel.opened", {"bank": "A/B"}),
    "opened compartment 0": ("parcel.opened", {"compartment": 0}),
    "opened compartment 256": ("parcel.opened", {"compartment": 256}),
    "opened compartment a string": ("parcel.opened", {"compartment": "5"}),
    "opened for missing": ("parcel.opened", {"for": None}),
    "opened for pickup": ("parcel.opened", {"for": "pickup"}),
    "opened for a list": ("parcel.opened", {"for": ["deposit"]}),
    "locker state a list": ("locker.state", {"state": ["free"]}),
}


async def test_malformed_parcel_events_are_stored_without_effect(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel, _ = await _request(db, lockers)
    fresh = pid()  # a terminal deposit's parcel: a malformed report must not create it
    for case, (type_, change) in sorted(BAD_EVENTS.items()):
        base = {
            "parcel.deposited": deposited(fresh),
            "parcel.picked_up": picked_up(parcel),
            "parcel.cancelled": {"parcel": parcel, "bank": "A", "reason": "courier"},
            "parcel.deposit_empty": {"parcel": parcel, "bank": "A", "compartment": 1},
            "parcel.opened": opened(parcel, 1),
            "locker.state": {"bank": "A", "compartment": 1, "state": "free"},
        }[type_]
        data = {k: v for k, v in {**base, **change}.items() if v is not None}
        assert await gw.send(gw.event(type_, data)) == 1, case
        row = await _parcel(db, parcel)
        assert row is not None
        assert (row.state, row.compartment) == ("requested", None), case
        assert await _parcel(db, fresh) is None, case
    assert await _notes(db, lockers) == []


# -- commands ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "want"),
    [
        ("failed", "no_free_compartment", "no_free_compartment"),
        ("failed", None, "failed"),
        ("rejected", "expired", "expired"),
    ],
)
async def test_a_failed_deposit_command_fails_its_requested_parcel(
    gw: Gw, db: Database, lockers: Lockers, status: str, reason: str | None, want: str
) -> None:
    parcel, cmd = await _request(db, lockers)
    report: dict[str, Any] = {"command": cmd, "status": status}
    if reason is not None:
        report["reason"] = reason
    await gw.send(gw.event("command.status", report))
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.reason) == ("failed", want)
    # The gateway's report of a deposit after all wins over the cloud's inference.
    await gw.send(gw.event("parcel.deposited", deposited(parcel, via="command")))
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.reason) == ("waiting", None)


async def test_a_deposit_command_that_opened_leaves_its_parcel_alone(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    parcel, cmd = await _request(db, lockers)
    await gw.send(
        gw.event("command.status", {"command": cmd, "status": "acknowledged"}),
        gw.event("command.status", {"command": cmd, "status": "opened"}),
    )
    row = await _parcel(db, parcel)
    assert row is not None
    assert row.state == "requested"
    # A failure of another command of a parcel that is already waiting changes nothing.
    await gw.send(gw.event("parcel.deposited", deposited(parcel, via="command")))
    _, pickup = await _request(db, lockers)
    async with db.session() as s:
        command = await s.get(Command, pickup)
        assert command is not None
        command.parcel_id, command.action = parcel, "parcel.pickup"
        await s.commit()
    await gw.send(gw.event("command.status", {"command": pickup, "status": "failed"}))
    row = await _parcel(db, parcel)
    assert row is not None
    assert row.state == "waiting"


async def test_an_expired_deposit_command_fails_its_parcel(
    db: Database, lockers: Lockers, fake_clock: Any
) -> None:
    parcel, cmd = await _request(db, lockers, status="queued")
    sweeper = ExpirySweeper(
        db,
        fake_clock,
        CommandWaiters(),
        grace_ms=1000,
        outcome_timeout_ms=60_000,
        interval_s=1,
    )
    assert await sweeper.sweep_once(now_ms=T0 + 60_000) == [cmd]
    row = await _parcel(db, parcel)
    assert row is not None
    assert (row.state, row.reason) == ("failed", "expired")
    async with db.session() as s:
        command = await s.get(Command, cmd)
        assert command is not None
        assert command.status == CommandStatus.EXPIRED.value


# -- locker.state and locker alarms ------------------------------------------------------------


async def _compartment(db: Database, bank_id: int, no: int) -> Compartment:
    async with db.session() as s:
        return (
            await s.exec(
                select(Compartment).where(
                    col(Compartment.bank_id) == bank_id, col(Compartment.no) == no
                )
            )
        ).one()


async def test_locker_state_follows_the_latest_change(
    gw: Gw, db: Database, lockers: Lockers
) -> None:
    out = {"bank": "A", "compartment": 1, "state": "out_of_service", "reason": "jammed"}
    back = {"bank": "A", "compartment": 1, "state": "free"}
    await gw.send(gw.event("locker.state", out, ts=T0 + 10))
    c = await _compartment(db, lockers.bank_id, 1)
    assert (c.state, c.reason, c.changed_at, c.size) == (
        "out_of_service",
        "jammed",
        T0 + 10,
        "mini",
    )
    # An older change arriving late is ignored; a newer one applies.
    await gw.send(gw.event("locker.state", back, ts=T0 + 5))
    c = await _compartment(db, lockers.bank_id, 1)
    assert (c.state, c.changed_at) == ("out_of_service", T0 + 10)
    await gw.send(gw.event("locker.state", back, ts=T0 + 20))
    c = await _compartment(db, lockers.bank_id, 1)
    assert (c.state, c.reason, c.changed_at) == ("free", None, T0 + 20)
    # Other compartments, unknown compartments and unknown banks: nothing changes.
    await gw.send(
        gw.event("locker.state", {**out, "compartment": 9}, ts=T0 + 30),
        gw.event("locker.state", {**out, "bank": "Z"}, ts=T0 + 30),
        gw.event("locker.state", {**out, "state": "broken"}, ts=T0 + 30),
    )
    assert (await _compartment(db, lockers.bank_id, 1)).state == "free"
    assert (await _compartment(db, lockers.bank_id, 3)).changed_at is None


async def test_a_cleared_locker_alarm_clears_the_alarm_it_answers(
    gw: Gw, db: Database, lockers: Lockers, fake_clock: Any
) -> None:
    left = {"kind": "locker_left_open", "bank": "A", "compartment": 2, "board": "bank-a-0"}
    await gw.send(
        gw.event("gateway.alarm", left),
        gw.event("gateway.alarm", {**left, "compartment": 3}),
        gw.event("gateway.alarm", {"kind": "locker_jammed", "bank": "A", "compartment": 2}),
    )
    await gw.send(gw.event("gateway.alarm", {**left, "cleared": True}))
    async with db.session() as s:
        alarms = (await s.exec(select(Alarm).order_by(col(Alarm.id)))).all()
    rows = [(a.kind, a.detail.get("compartment"), a.cleared_at) for a in alarms]
    assert rows == [
        ("locker_left_open", 2, fake_clock.now),
        ("locker_left_open", 3, None),
        ("locker_jammed", 2, None),
        ("locker_left_open", 2, fake_clock.now),
    ]
    assert alarms[3].detail["cleared"] is True


# -- the state machine and the stored data ---------------------------------------------------------


def test_parcel_moves_only_go_up_the_rank() -> None:
    assert set(PARCEL_RANK) == set(PARCEL_STATES)
    for to, sources in _PARCEL_FROM.items():
        assert all(PARCEL_RANK[s] < PARCEL_RANK[to] for s in sources), to
    # Nothing leaves a finished parcel, and nothing makes a picked-up parcel waiting.
    finished = {"picked_up", "retrieved", "cancelled"}
    assert not any(finished & set(sources) for sources in _PARCEL_FROM.values())
    # A parcel takes the compartment of an open door only while its deposit is under way.
    assert set(_PLACEABLE) == {s for s, r in PARCEL_RANK.items() if r < PARCEL_RANK["waiting"]}


async def _all_stored_text(db: Database) -> list[str]:
    """Every text, JSON and binary value of every table, as text."""
    out: list[str] = []
    async with db.session() as s:
        for table in SQLModel.metadata.sorted_tables:
            cols = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            blobs = [c for c in table.columns if isinstance(c.type, LargeBinary)]
            if not cols and not blobs:
                continue
            for row in (await s.execute(sa_select(*cols, *blobs))).all():
                for value in row:
                    if isinstance(value, bytes):
                        out.append(value.hex())
                        out.append(value.decode("latin-1"))
                    elif value is not None:
                        out.append(str(value))
    return out


async def test_no_pickup_code_is_stored_anywhere(
    gw: Gw, db: Database, lockers: Lockers, cloud_keys: CloudKeys
) -> None:
    gateway = lockers.seeded.gateway_id
    parcels = [pid() for _ in range(6)]
    requested, _ = await _request(db, lockers)
    parcels.append(requested)
    seeded_parcel = lockers.seeded.parcel_id
    events = [
        gw.event(
            "parcel.deposited",
            deposited(p, code_n=i % 3, compartment=1 + i % 3, courier=lockers.courier_id),
        )
        for i, p in enumerate(parcels)
    ]
    await gw.send(*events[:4])
    await gw.send(gw.event("parcel.picked_up", picked_up(parcels[0])))
    await gw.send(*events[4:])
    codes = []
    for p in [*parcels, seeded_parcel]:
        row = await _parcel(db, p)
        assert row is not None
        assert row.code_n is not None
        code = pickup_code(cloud_keys, row)
        assert code == derive_code(cloud_keys.gateway_code_key(gateway), p, row.code_n)
        codes.append(code)
        codes.append(code[2:])  # a 6-digit site's code would be another number: check its tail
    assert len(await _notes(db, lockers)) == 7  # Li, for each parcel
    stored = await _all_stored_text(db)
    assert any(p in text for text in stored for p in parcels)  # the search does see the data
    for code in codes:
        # As a number of its own (a code inside a longer number, a timestamp, is no leak).
        found = re.compile(rf"(?<![0-9]){code}(?![0-9])")
        assert not any(found.search(text) for text in stored), "a pickup code is stored"
    async with db.session() as s:
        assert (await s.exec(select(func.count()).select_from(GatewayEvent))).one() == 8
