"""The parcel flows of docs/parcels.md against simulated lock boards on a simulated line.

Every open is a real 31H + 30H through the bus owner; the cabinet's person (put, take, close) and
faults (jam) act on the simulated boards; the watch is driven one pass at a time and the clock is
injected, so hours pass without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud_sync.protocol import CommandBody, CommandStatus
from gateway.parcel_commands import PARCEL_ACTIONS, ParcelCommands
from gateway.parcels import ParcelRefused, Refusal
from tests.gateway.locker_site import HOUR, LockerSite, locker_site, new_parcel

DEPOSITED_KEYS = {
    "parcel",
    "bank",
    "compartment",
    "size",
    "unit",
    "courier",
    "company",
    "code_n",
    "deposited_at",
    "via",
}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[LockerSite]:
    async with locker_site(tmp_path) as s:
        yield s


async def refused(reason: Refusal, awaitable: object) -> ParcelRefused:
    with pytest.raises(ParcelRefused) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.reason is reason
    return caught.value


# -- deposit ----------------------------------------------------------------------------------


async def test_a_deposit_is_recorded_with_a_code_and_picked_up_with_it(site: LockerSite) -> None:
    parcel = new_parcel()
    opened = await site.deposit(parcel)
    assert opened.compartment == 1  # the smallest free S
    assert site.door_open(1)
    assert site.compartment(1).state == "reserved"
    assert site.parcel(parcel).state == "awaiting_close"

    await site.poll()  # the courier is still at it: nothing happens
    assert site.events("parcel.deposited") == []
    site.put(1)
    site.close(1)
    await site.poll()

    (event,) = site.events("parcel.deposited")
    assert set(event) == DEPOSITED_KEYS
    assert event == {
        "parcel": parcel,
        "bank": "A",
        "compartment": 1,
        "size": "S",
        "unit": "1-2-301",
        "courier": 42,
        "company": "SF Express",
        "code_n": event["code_n"],
        "deposited_at": site.clock.now,
        "via": "command",
    }
    assert site.compartment(1).state == "occupied"
    code = site.code(parcel)
    assert len(code) == 8
    assert code.isdigit()
    # Only the keyed index is stored, never the code.
    assert code not in str(site.store.query("SELECT * FROM parcels"))

    opened = await site.parcels.pickup_by_code("A", code)
    assert opened.compartment == 1
    assert site.door_open(1)
    (picked,) = site.events("parcel.picked_up")
    assert picked == {
        "parcel": parcel,
        "bank": "A",
        "compartment": 1,
        "via": "code",
        "at": site.clock.now,
        "fee_cents": 0,
        "fee_state": "owed",
    }
    # Occupied by nobody until the watch reads the door latched and the compartment empty.
    assert site.compartment(1).state == "occupied"
    assert site.compartment(1).parcel is None
    await site.poll()
    assert site.compartment(1).state == "occupied"
    site.take(1)
    site.close(1)
    await site.poll()
    assert site.compartment(1).state == "free"
    assert site.pulses(1) == 2  # one open for the courier, one for the recipient
    # The same code opens nothing any more.
    await refused(Refusal.WRONG_CODE, site.parcels.pickup_by_code("A", code))


async def test_an_empty_deposit_waits_for_the_courier_and_a_retry_deposits(
    site: LockerSite,
) -> None:
    parcel = new_parcel()
    await site.deposit(parcel, "M")  # no 5 is the smallest M (8 is on A-1 but numbered higher)
    assert site.parcel(parcel).compartment == 5
    site.close(5)
    await site.poll()
    assert site.events("parcel.deposit_empty") == [
        {"parcel": parcel, "bank": "A", "compartment": 5}
    ]
    assert site.parcel(parcel).state == "empty"
    await site.poll()  # reported once
    assert len(site.events("parcel.deposit_empty")) == 1

    opened = await site.parcels.reopen("A", parcel)
    assert opened.compartment == 5
    assert site.door_open(5)
    site.put(5)
    site.close(5)
    await site.poll()
    (event,) = site.events("parcel.deposited")
    assert event["compartment"] == 5
    assert event["size"] == "M"
    await refused(Refusal.WRONG_STATE, site.parcels.reopen("A", parcel))
    await refused(Refusal.WRONG_STATE, _cancel(site, parcel))


async def _cancel(site: LockerSite, parcel: str) -> None:
    site.parcels.cancel("A", parcel)


async def test_cancel_frees_the_compartment(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposit(parcel)
    site.close(1)
    await site.poll()
    site.parcels.cancel("A", parcel)
    assert site.events("parcel.cancelled") == [{"parcel": parcel, "bank": "A", "reason": "courier"}]
    assert site.compartment(1).state == "free"
    assert site.parcel(parcel).state == "cancelled"

    # Cancelled while the door is still open: cleared once it is shut and empty.
    other = new_parcel()
    assert (await site.deposit(other)).compartment == 1
    site.parcels.cancel("A", other)
    assert site.compartment(1).state == "reserved"
    assert site.compartment(1).parcel is None
    await site.poll()
    assert site.compartment(1).state == "reserved"
    site.close(1)
    await site.poll()
    assert site.compartment(1).state == "free"
    await refused(Refusal.NOT_FOUND, _cancel(site, new_parcel()))


async def test_a_deposit_left_empty_is_cancelled_after_the_timeout(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposit(parcel)
    site.close(1)
    await site.poll()
    site.clock.advance(299_000)
    await site.poll()
    assert site.parcel(parcel).state == "empty"
    site.clock.advance(1_000)
    await site.poll()
    assert site.parcel(parcel).state == "cancelled"
    assert site.events("parcel.cancelled") == [{"parcel": parcel, "bank": "A", "reason": "timeout"}]
    assert site.compartment(1).state == "free"


async def test_a_terminal_deposit_without_a_courier_account(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposited(parcel, "S", courier=None, company=None, via="terminal")
    (event,) = site.events("parcel.deposited")
    assert set(event) == DEPOSITED_KEYS - {"courier", "company"}
    assert event["via"] == "terminal"
    site.clock.advance(100 * HOUR)
    await refused(Refusal.NOT_YOUR_PARCEL, site.parcels.retrieve("A", parcel, 42))


async def test_refused_deposits(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposited(parcel, "L")
    await refused(Refusal.DUPLICATE, site.deposit(parcel, "L"))
    await refused(Refusal.NO_FREE_COMPARTMENT, site.deposit(new_parcel(), "L"))
    with pytest.raises(ParcelRefused) as caught:
        await site.parcels.pickup("B", parcel, "remote")
    assert caught.value.reason is Refusal.NOT_FOUND
    # A refused deposit leaves nothing behind.
    assert [row[0] for row in site.store.query("SELECT id FROM parcels")] == [parcel]


# -- jams -------------------------------------------------------------------------------------


async def test_a_jammed_compartment_is_taken_out_and_the_deposit_reassigned(
    site: LockerSite,
) -> None:
    with site.at(1) as (board, lock):
        board.jam(lock)
    parcel = new_parcel()
    opened = await site.deposit(parcel)

    assert opened.compartment == 2
    assert site.pulses(1) == 2  # pulsed, read back latched, pulsed once more: no more
    assert site.pulses(2) == 1
    assert site.compartment(1).state == "out_of_service"
    assert site.compartment(1).reason == "jammed"
    assert site.compartment(1).parcel is None
    assert site.events("gateway.alarm") == [
        {"kind": "locker_jammed", "bank": "A", "compartment": 1, "board": "A-1"}
    ]
    assert site.events("locker.state") == [
        {"bank": "A", "compartment": 1, "state": "out_of_service", "reason": "jammed"}
    ]
    site.put(2)
    site.close(2)
    await site.poll()
    assert site.events("parcel.deposited")[0]["compartment"] == 2
    # Out of service stays out: never allocated, never changed by the watch.
    await site.poll()
    assert site.compartment(1).state == "out_of_service"
    assert (await site.deposit(new_parcel())).compartment == 3


async def test_three_jams_refuse_the_deposit(site: LockerSite) -> None:
    for no in (1, 2, 3):
        with site.at(no) as (board, lock):
            board.jam(lock)
    parcel = new_parcel()
    await refused(Refusal.JAMMED, site.deposit(parcel))
    assert [site.compartment(no).state for no in (1, 2, 3, 4)] == [
        "out_of_service",
        "out_of_service",
        "out_of_service",
        "free",
    ]
    assert len(site.events("gateway.alarm", kind="locker_jammed")) == 3
    assert site.banks.parcel(parcel) is None  # forgotten: no event ever named it
    assert site.events("parcel.cancelled") == []
    assert site.events("parcel.opened") == []


async def test_after_jams_the_cloud_is_told_the_compartment_the_parcel_moved_to(
    site: LockerSite,
) -> None:
    with site.at(5) as (board, lock):
        board.jam(lock)
    parcel = new_parcel()
    assert (await site.deposit(parcel, "M")).compartment == 6
    assert site.events("parcel.opened") == [
        {"parcel": parcel, "bank": "A", "compartment": 6, "for": "deposit"}
    ]
    # Nothing is said of the jammed compartment but its fault, told first.
    types = site.types()
    assert types.index("locker.state") < types.index("parcel.opened")

    # Closed empty; the retry finds 6 jammed too and moves on to the last M: the newest says 8.
    site.close(6)
    await site.poll()
    with site.at(6) as (board, lock):
        board.jam(lock)
    assert (await site.parcels.reopen("A", parcel)).compartment == 8
    assert site.events("parcel.opened") == [
        {"parcel": parcel, "bank": "A", "compartment": 6, "for": "deposit"},
        {"parcel": parcel, "bank": "A", "compartment": 8, "for": "reopen"},
    ]
    assert [site.compartment(no).state for no in (5, 6, 8)] == [
        "out_of_service",
        "out_of_service",
        "reserved",
    ]
    site.put(8)
    site.close(8)
    await site.poll()
    (event,) = site.events("parcel.deposited")
    assert event["compartment"] == 8


async def test_a_jammed_pickup_puts_the_parcel_back(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposited(parcel)
    with site.at(1) as (board, lock):
        board.jam(lock)
    await refused(Refusal.JAMMED, site.parcels.pickup("A", parcel, "remote"))
    assert site.pulses(1) == 3  # one deposit open, two pickup pulses
    assert site.parcel(parcel).state == "occupied"
    assert site.compartment(1).state == "out_of_service"
    assert site.events("gateway.alarm", kind="locker_jammed") == [
        {"kind": "locker_jammed", "bank": "A", "compartment": 1, "board": "A-1"}
    ]
    assert site.events("parcel.picked_up") == []

    # An engineer repairs the lock and puts the compartment back: the parcel can be picked up.
    with site.at(1) as (board, lock):
        board.repair(lock)
    assert site.banks.return_to_service("A", 1) == "occupied"
    assert site.events("locker.state")[-1] == {"bank": "A", "compartment": 1, "state": "occupied"}
    await site.parcels.pickup("A", parcel, "remote")
    assert site.events("parcel.picked_up")[0]["via"] == "remote"


# -- pickup -----------------------------------------------------------------------------------


async def test_two_simultaneous_pickups_open_the_door_once(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposited(parcel)
    code = site.code(parcel)
    before = site.pulses(1)

    results = await asyncio.gather(
        site.parcels.pickup("A", parcel, "remote"),
        site.parcels.pickup("A", parcel, "qr"),
        site.parcels.pickup_by_code("A", code),
        return_exceptions=True,
    )

    opened = [r for r in results if not isinstance(r, BaseException)]
    refusals = [r for r in results if isinstance(r, ParcelRefused)]
    assert len(opened) == 1
    assert sorted(r.reason for r in refusals) == [Refusal.ALREADY_CLAIMED] * 2
    assert site.pulses(1) - before == 1  # exactly one 31H reached the lock
    assert len(site.events("parcel.picked_up")) == 1
    await refused(Refusal.ALREADY_CLAIMED, site.parcels.pickup("A", parcel, "remote"))


async def test_wrong_codes_lock_the_keypad_but_not_qr_or_remote(site: LockerSite) -> None:
    first, second, third = new_parcel(), new_parcel(), new_parcel()
    await site.deposited(first)
    await site.deposited(second)
    await site.deposited(third)
    code = site.code(first)
    wrong = "00000000" if code != "00000000" else "11111111"

    for _ in range(4):
        await refused(Refusal.WRONG_CODE, site.parcels.pickup_by_code("A", wrong))
    await refused(Refusal.WRONG_CODE, site.parcels.pickup_by_code("A", "12ab"))  # counts too
    locked = await refused(Refusal.LOCKED_OUT, site.parcels.pickup_by_code("A", code))
    assert locked.locked_until_ms == site.clock.now + 600_000
    # Refusals during the lockout are not attempts, and do not extend it.
    for _ in range(10):
        await refused(Refusal.LOCKED_OUT, site.parcels.pickup_by_code("A", wrong))
    # QR and remote pickups go on.
    await site.parcels.pickup("A", second, "qr")
    await site.parcels.pickup("A", third, "remote")

    site.clock.advance(600_000)
    # After the lockout, five more wrong codes lock it for twice as long.
    for _ in range(5):
        await refused(Refusal.WRONG_CODE, site.parcels.pickup_by_code("A", wrong))
    locked = await refused(Refusal.LOCKED_OUT, site.parcels.pickup_by_code("A", code))
    assert locked.locked_until_ms == site.clock.now + 1_200_000
    site.clock.advance(1_200_000)
    # A gateway restart forgets nothing of it; a correct code works and resets the doubling.
    site.restart_gateway()
    for _ in range(4):
        await refused(Refusal.WRONG_CODE, site.parcels.pickup_by_code("A", wrong))
    opened = await site.parcels.pickup_by_code("A", code)
    assert opened.parcel == first
    assert site.pulses(1) == 2  # nothing but the deposit and this pickup opened it
    rows = site.store.query("SELECT count(*) FROM code_failures")
    assert rows == [(0,)]
    assert site.store.query("SELECT count(*) FROM code_lockouts") == [(0,)]


async def test_wrong_codes_spread_over_more_than_the_window_do_not_lock(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposited(parcel)
    for _ in range(8):
        await refused(Refusal.WRONG_CODE, site.parcels.pickup_by_code("A", "99999999"))
        site.clock.advance(150_001)  # four wrong codes fit in no 10-minute window
    await site.parcels.pickup_by_code("A", site.code(parcel))


async def test_the_lockout_doubles_up_to_four_hours(tmp_path: Path) -> None:
    async with locker_site(tmp_path) as site:
        lengths = []
        for _ in range(7):
            for _ in range(5):
                await refused(Refusal.WRONG_CODE, site.parcels.pickup_by_code("A", "12345678"))
            locked = await refused(Refusal.LOCKED_OUT, site.parcels.pickup_by_code("A", "12345678"))
            assert locked.locked_until_ms is not None
            lengths.append((locked.locked_until_ms - site.clock.now) // 60_000)
            site.clock.advance(locked.locked_until_ms - site.clock.now)
        assert lengths == [10, 20, 40, 80, 160, 240, 240]


# -- fees and retrieval -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored_ms", "fee"),
    [(12 * HOUR, 0), (12 * HOUR + 1, 50), (24 * HOUR + 1, 100), (100 * HOUR, 300)],
)
async def test_the_fee_is_recorded_owed_at_pickup(tmp_path: Path, stored_ms: int, fee: int) -> None:
    async with locker_site(tmp_path) as site:
        parcel = new_parcel()
        await site.deposited(parcel)
        site.clock.advance(stored_ms)
        await site.parcels.pickup("A", parcel, "remote")
        (event,) = site.events("parcel.picked_up")
        assert event["fee_cents"] == fee
        assert event["fee_state"] == "owed"
        assert site.parcel(parcel).fee_cents == fee


async def test_retrieval_by_the_depositing_courier_after_retention(site: LockerSite) -> None:
    parcel = new_parcel()
    await site.deposited(parcel, courier=42)
    await refused(Refusal.NOT_YOUR_PARCEL, site.parcels.retrieve("A", parcel, 43))
    site.clock.advance(72 * HOUR - 1)
    await refused(Refusal.NOT_OVERDUE, site.parcels.retrieve("A", parcel, 42))
    site.clock.advance(1)
    await refused(Refusal.NOT_YOUR_PARCEL, site.parcels.retrieve("A", parcel, 43))
    opened = await site.parcels.retrieve("A", parcel, 42)

    assert opened.compartment == 1
    assert site.events("parcel.retrieved") == [
        {"parcel": parcel, "bank": "A", "compartment": 1, "courier": 42, "at": site.clock.now}
    ]
    assert site.events("parcel.picked_up") == []
    assert site.parcel(parcel).state == "retrieved"
    assert site.parcel(parcel).fee_cents == 0
    await refused(Refusal.ALREADY_CLAIMED, site.parcels.pickup("A", parcel, "remote"))
    await refused(Refusal.NOT_FOUND, site.parcels.retrieve("A", new_parcel(), 42))
    site.take(1)
    site.close(1)
    await site.poll()
    assert site.compartment(1).state == "free"


# -- commands ---------------------------------------------------------------------------------


def _command(site: LockerSite, action: str, args: dict[str, int | str]) -> CommandBody:
    """A command as the replay guard records it (status ``sent``)."""
    body = CommandBody(
        id=new_parcel(),
        gateway=site.settings.id,
        target="A",
        action=action,
        seq=1,
        issued_at=site.clock.now,
        expires_at=site.clock.now + 30_000,
        kid="k" * 16,
        actor="cloud:test",
        args=args,
    )
    with site.store.transaction() as tx:
        tx.execute(
            "INSERT INTO commands (id, kid, seq, door, action, actor, status, reason,"
            " received_ms, expires_ms, updated_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, 'sent', NULL, ?, ?, ?)",
            (
                body.id,
                body.kid,
                body.seq,
                body.target,
                body.action,
                body.actor,
                site.clock.now,
                body.expires_at,
                site.clock.now,
            ),
        )
    return body


def _statuses(site: LockerSite, body: CommandBody) -> list[tuple[str, str | None]]:
    return [(e["status"], e.get("reason")) for e in site.events("command.status", command=body.id)]


async def test_parcel_commands_report_their_lifecycle(site: LockerSite) -> None:
    handlers = ParcelCommands(site.parcels, site.commands).handlers()
    assert set(handlers) == set(PARCEL_ACTIONS)
    parcel = new_parcel()
    deposit = _command(
        site,
        "parcel.deposit",
        {"parcel": parcel, "size": "S", "unit": "3-1-1202", "courier": 7, "company": "JD"},
    )
    await handlers["parcel.deposit"](deposit)
    assert _statuses(site, deposit) == [("acknowledged", None), ("opened", None)]
    site.close(1)
    await site.poll()
    reopen = _command(site, "parcel.reopen", {"parcel": parcel})
    await handlers["parcel.reopen"](reopen)
    assert _statuses(site, reopen) == [("acknowledged", None), ("opened", None)]
    site.close(1)
    await site.poll()
    cancel = _command(site, "parcel.cancel", {"parcel": parcel})
    await handlers["parcel.cancel"](cancel)
    assert _statuses(site, cancel) == [("acknowledged", None), ("completed", None)]

    again = new_parcel()
    await site.deposited(again, courier=7)
    pickup = _command(site, "parcel.pickup", {"parcel": again})
    await handlers["parcel.pickup"](pickup)
    assert _statuses(site, pickup) == [("acknowledged", None), ("opened", None)]
    twice = _command(site, "parcel.pickup", {"parcel": again})
    await handlers["parcel.pickup"](twice)
    assert _statuses(site, twice) == [("acknowledged", None), ("failed", "already_claimed")]
    # The outcome commits with the flow's record: opened right after the picked_up event.
    types = site.types()
    assert types[types.index("parcel.picked_up") + 1] == "command.status"

    third = new_parcel()
    await site.deposited(third, courier=7)
    early = _command(site, "parcel.retrieve", {"parcel": third, "courier": 7})
    await handlers["parcel.retrieve"](early)
    assert _statuses(site, early) == [("acknowledged", None), ("failed", "not_overdue")]
    site.clock.advance(72 * HOUR)
    late = _command(site, "parcel.retrieve", {"parcel": third, "courier": 7})
    await handlers["parcel.retrieve"](late)
    assert _statuses(site, late) == [("acknowledged", None), ("opened", None)]


def _outboxed(site: LockerSite) -> list[tuple[str, dict[str, object]]]:
    return [(e.type, e.data) for e in site.outbox.pending(100_000)]


async def test_an_open_for_the_courier_names_its_compartment_before_the_opened_status(
    site: LockerSite,
) -> None:
    handlers = ParcelCommands(site.parcels, site.commands).handlers()
    parcel = new_parcel()
    deposit = _command(
        site,
        "parcel.deposit",
        {"parcel": parcel, "size": "M", "unit": "3-1-1202", "courier": 7},
    )
    await handlers["parcel.deposit"](deposit)
    assert _outboxed(site)[-3:] == [
        ("command.status", {"command": deposit.id, "status": "acknowledged"}),
        ("parcel.opened", {"parcel": parcel, "bank": "A", "compartment": 5, "for": "deposit"}),
        ("command.status", {"command": deposit.id, "status": "opened"}),
    ]

    site.close(5)
    await site.poll()
    reopen = _command(site, "parcel.reopen", {"parcel": parcel})
    await handlers["parcel.reopen"](reopen)
    assert _outboxed(site)[-2:] == [
        ("parcel.opened", {"parcel": parcel, "bank": "A", "compartment": 5, "for": "reopen"}),
        ("command.status", {"command": reopen.id, "status": "opened"}),
    ]

    # Only opens for the courier are told so: not the deposit, a pickup or a refused reopen.
    site.put(5)
    site.close(5)
    await site.poll()
    await site.parcels.pickup("A", parcel, "remote")
    await handlers["parcel.reopen"](_command(site, "parcel.reopen", {"parcel": parcel}))
    assert len(site.events("parcel.opened")) == 2
    assert site.types()[-1] == "command.status"


@pytest.mark.parametrize(
    ("action", "args"),
    [
        ("parcel.deposit", {"parcel": "A" * 32, "size": "S", "unit": "1", "courier": 1}),
        ("parcel.deposit", {"parcel": "a" * 31, "size": "S", "unit": "1", "courier": 1}),
        ("parcel.deposit", {"parcel": "a" * 32, "size": "XL", "unit": "1", "courier": 1}),
        ("parcel.deposit", {"parcel": "a" * 32, "size": "S", "unit": "x" * 41, "courier": 1}),
        ("parcel.deposit", {"parcel": "a" * 32, "size": "S", "unit": "", "courier": 1}),
        ("parcel.deposit", {"parcel": "a" * 32, "size": "S", "unit": "a\nb", "courier": 1}),
        ("parcel.deposit", {"parcel": "a" * 32, "size": "S", "unit": "1", "courier": "1"}),
        ("parcel.deposit", {"parcel": "a" * 32, "size": "S", "unit": "1", "courier": 0}),
        ("parcel.deposit", {"parcel": "a" * 32, "size": "S", "unit": "1"}),
        (
            "parcel.deposit",
            {"parcel": "a" * 32, "size": "S", "unit": "1", "courier": 1, "company": "c" * 65},
        ),
        (
            "parcel.deposit",
            {"parcel": "a" * 32, "size": "S", "unit": "1", "courier": 1, "phone": "138"},
        ),
        ("parcel.pickup", {}),
        ("parcel.pickup", {"parcel": "a" * 32, "via": "qr"}),
        ("parcel.cancel", {"parcel": 5}),
        ("parcel.retrieve", {"parcel": "a" * 32}),
        ("parcel.reopen", {"parcel": "a" * 32, "courier": 1}),
    ],
)
async def test_malformed_parcel_commands_fail_without_touching_a_lock(
    site: LockerSite, action: str, args: dict[str, int | str]
) -> None:
    handlers = ParcelCommands(site.parcels, site.commands).handlers()
    body = _command(site, action, args)
    await handlers[action](body)
    assert _statuses(site, body) == [("failed", "bad_args")]
    assert site.commands.status(body.id) is CommandStatus.FAILED
    assert all(site.pulses(no) == 0 for no in range(1, 9))
