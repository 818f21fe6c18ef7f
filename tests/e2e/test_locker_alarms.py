"""Issue 4, "Done when 2": every locker fault raises its alarm and leaves the right compartment
state, end to end — simulated lock board → gateway (flows and watch) → outbox → real broker →
cloud inbox → what an engineer sees (``GET /api/v1/alarms``, ``GET /api/v1/locker-banks``).

The community runs its RS-485 lines; bank ``A`` is the 16 locks of lock board ``bank-a-0`` on line
``lockers-a`` (lock n is compartment n: 1-4 mini, 5-10 S, 11-14 M, 15-16 L). Faults are injected
in the simulated board (jam, stuck infrared, a forced door, power) or on the simulated line (the
board vanishing); the person at the cabinet (put, take, close) is the test.

Two things :class:`~courtyard.community.Community` does not offer are added by a subclass here,
without touching the composition: parcel rules (its gateway runs the defaults — a watch pass a
second and 120 s before a door counts as left open — so :meth:`LockerCommunity.gateway_settings`
takes the watch to 50 ms and ``left_open_s`` to its minimum, 5 s), and a board that can lose power
in the middle of an open (:class:`CuttableBoard`, put into the community's
:attr:`~courtyard.community.Community.cabinet` before the gateway first talks to it).

The cloud's compartment ``state`` is the *service* state the gateway reports in ``locker.state``
events (docs/parcels.md "Events"): out of service with a reason, or back. A compartment in service
therefore reads ``free`` in the cloud whatever it holds; "unchanged" below means exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from courtyard.community import LOCKER_BOARD, Cabinet, Community
from devices.lockboard import LockBoard
from devices.serialbus import Fault
from gateway import GatewaySettings
from gateway.settings import ParcelRules
from tests.e2e.conftest import Api

T = TypeVar("T")

BANK = "A"
LINE = "lockers-a"
UNIT = "1-201"
"""The recipients' unit (residents ``li`` and ``wang``)."""
RULES: dict[str, Any] = {"watch_interval_s": 0.05, "left_open_s": 5}
LEFT_OPEN_MS = RULES["left_open_s"] * 1000
COMPARTMENTS = range(1, 17)
WITHIN = 25.0
"""How long any one end-to-end condition may take (seconds)."""
POLL_S = 0.05
LOCKER_KINDS = frozenset(
    {
        "locker_jammed",
        "locker_left_open",
        "locker_sensor_mismatch",
        "lockboard_offline",
        "locker_forced",
        "locker_reconciled",
    }
)
IN_SERVICE = ("free", None)
OCCUPIED = ("occupied", None)  # in service, holding a parcel the cloud knows was put in


class CuttableBoard(LockBoard):
    """The community's Kerong board (address 0, 16 locks) whose power can fail at the worst
    moment: after :meth:`cut_after_pulse`, the next pulse of that lock is the board's last act —
    the solenoid fires, the door springs open, and the board dies before it answers.

    Acted on like any board, inside :meth:`courtyard.community.Cabinet.hands`.
    """

    def __init__(self, board: int) -> None:
        super().__init__(board)
        self._cut_after: int | None = None
        self.power_cut = threading.Event()

    def cut_after_pulse(self, lock: int) -> None:
        """Cut the power right after ``lock``'s solenoid next fires."""
        self.power_cut.clear()
        self._cut_after = lock

    def respond(self, request: bytes, now: float) -> bytes | None:
        armed = self._cut_after
        before = 0 if armed is None else self.compartment(armed).pulses
        reply = super().respond(request, now)
        if armed is not None and self.compartment(armed).pulses > before:
            self._cut_after = None
            self.power_off(now=now)
            self.power_cut.set()
            return None
        return reply


class Person:
    """The person at bank A and the faults, acting on the community's :class:`Cabinet` (lock n is
    compartment n), each act with the board held still."""

    def __init__(self, cabinet: Cabinet) -> None:
        self.cabinet = cabinet
        with cabinet.hands() as board:
            assert isinstance(board, CuttableBoard)
            self.power_cut = board.power_cut

    @contextlib.contextmanager
    def board(self) -> Iterator[CuttableBoard]:
        with self.cabinet.hands() as board:
            assert isinstance(board, CuttableBoard)
            yield board

    def put(self, no: int) -> None:
        with self.board() as b:
            b.put_parcel(no)

    def take(self, no: int) -> None:
        with self.board() as b:
            b.take_parcel(no)

    def close(self, no: int) -> None:
        with self.board() as b:
            b.close_door(no)

    def force(self, no: int) -> None:
        with self.board() as b:
            b.force(no)

    def jam(self, no: int) -> None:
        with self.board() as b:
            b.jam(no)

    def stick_infrared(self, no: int, reading: bool) -> None:
        with self.board() as b:
            b.stick_infrared(no, reading)

    def power(self, on: bool) -> None:
        with self.board() as b:
            if on:
                b.power_on()
            else:
                b.power_off()

    def cut_power_after_pulse(self, no: int) -> None:
        with self.board() as b:
            b.cut_after_pulse(no)

    def door_open(self, no: int) -> bool:
        with self.board() as b:
            return b.compartment(no).door_open

    def pulses(self, no: int) -> int:
        """How many times compartment ``no``'s solenoid fired."""
        with self.board() as b:
            return b.compartment(no).pulses


class LockerCommunity(Community):
    """The community with a fast locker watch and a board whose power can be cut mid-open."""

    def __init__(self, data_dir: Path, **kw: Any) -> None:
        super().__init__(data_dir, rs485=True, **kw)

    def gateway_settings(self) -> GatewaySettings:
        settings = super().gateway_settings()
        rules = ParcelRules.model_validate({**settings.parcels.model_dump(), **RULES})
        return settings.model_copy(update={"parcels": rules})

    def _start_buses(self) -> None:
        super()._start_buses()
        # The same board, able to lose power mid-open; put in before any master connected.
        assert self.cabinet is not None
        with self.cabinet.hands():
            self.cabinet.board = CuttableBoard(0)


async def until(probe: Callable[[], Awaitable[T | None]], what: str, within: float = WITHIN) -> T:
    """The first non-None answer of ``probe``, asked every ``POLL_S``; fails after ``within``."""
    try:
        async with asyncio.timeout(within):
            while True:
                found = await probe()
                if found is not None:
                    return found
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


def view(alarm: dict[str, Any]) -> tuple[Any, ...]:
    """An alarm as the engineer reads it: kind, bank, compartment, board, cleared?, still open?"""
    d = alarm["detail"]
    return (
        alarm["kind"],
        d.get("bank"),
        d.get("compartment"),
        d.get("board"),
        d.get("cleared", False),
        alarm["cleared_at"] is None,
    )


@dataclass
class Site:
    """The running community and its cloud API, signed in as engineer, courier and resident."""

    c: LockerCommunity
    api: Api
    engineer: str
    courier: str
    resident: str
    bank: int = 0

    @property
    def cabinet(self) -> Person:
        assert self.c.cabinet is not None
        return Person(self.c.cabinet)

    async def get(self, path: str, token: str | None = None) -> Any:
        status, body = await self.api.call("GET", path, token or self.engineer)
        assert status == 200, (path, status, body)
        return body

    # -- the engineer's view ---------------------------------------------------------------

    async def compartments(self) -> dict[int, tuple[str, str | None]]:
        """Bank A's compartments as the engineer sees them: ``{no: (state, reason)}``."""
        body = await self.get("/api/v1/locker-banks")
        (bank,) = [b for b in body["banks"] if b["id"] == self.bank]
        return {c["no"]: (c["state"], c["reason"]) for c in bank["compartments"]}

    async def wait_compartments(
        self, expected: dict[int, tuple[str, str | None]]
    ) -> dict[int, tuple[str, str | None]]:
        """Wait until every compartment is as ``expected`` says (the rest in service)."""
        want = {no: expected.get(no, IN_SERVICE) for no in COMPARTMENTS}

        async def probe() -> dict[int, tuple[str, str | None]] | None:
            found = await self.compartments()
            return found if found == want else None

        return await until(probe, f"compartments {expected}, the rest in service")

    async def alarms(self, *kinds: str) -> list[dict[str, Any]]:
        """The site's alarms (of ``kinds``), oldest first, as the engineer lists them."""
        body = await self.get("/api/v1/alarms?limit=500")
        found = [a for a in reversed(body["alarms"]) if not kinds or a["kind"] in kinds]
        assert all(a["gateway"] == self.c.gateway_id for a in found)
        return found

    async def wait_alarms(
        self, kind: str, check: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> list[dict[str, Any]]:
        """Wait until the alarms of ``kind`` satisfy ``check``."""

        async def probe() -> list[dict[str, Any]] | None:
            found = await self.alarms(kind)
            return found if check(found) else None

        return await until(probe, what)

    async def settled(self) -> None:
        """Every event the gateway sent arrived: no sequence gap is open in the cloud."""
        assert await self.alarms("sequence_gap") == []

    # -- parcels ---------------------------------------------------------------------------

    async def parcel(self, parcel: str) -> dict[str, Any]:
        return dict(await self.get(f"/api/v1/parcels/{parcel}"))

    async def wait_parcel(self, parcel: str, state: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            found = await self.parcel(parcel)
            return found if found["state"] == state else None

        return await until(probe, f"parcel {parcel} {state}")

    async def request_deposit(self, size: str) -> tuple[str, str]:
        """The courier's deposit at bank A for unit 1-201: (parcel id, command id)."""
        status, body = await self.api.call(
            "POST",
            "/api/v1/parcels",
            self.courier,
            json={"bank": self.bank, "size": size, "unit": UNIT},
        )
        assert status == 202, body
        assert body["parcel"]["state"] == "requested"
        return body["parcel"]["id"], body["command"]["command_id"]

    async def deposit(self, size: str) -> tuple[str, dict[str, Any]]:
        """A deposit up to its command's end: (parcel id, the command as the courier sees it)."""
        parcel, command = await self.request_deposit(size)
        return parcel, await self.api.wait_terminal(self.courier, command)

    async def deposited(self, size: str, no: int) -> str:
        """A whole deposit into compartment ``no``: opened, put in, shut, waiting in the cloud."""
        parcel, command = await self.deposit(size)
        assert command["status"] == "opened", command
        assert self.cabinet.door_open(no)
        self.cabinet.put(no)
        self.cabinet.close(no)
        found = await self.wait_parcel(parcel, "waiting")
        assert found["compartment"] == no
        return parcel

    async def pickup(self, parcel: str) -> dict[str, Any]:
        """The resident's remote pickup up to its command's end."""
        status, body = await self.api.call(
            "POST", f"/api/v1/parcels/{parcel}/pickup", self.resident
        )
        assert status == 202, body
        return await self.api.wait_terminal(self.resident, body["command"]["command_id"])

    # -- the gateway's life ----------------------------------------------------------------

    async def board_watched(self) -> None:
        """The gateway's watch has read the lock board (it answers)."""

        async def probe() -> bool | None:
            gw = self.c.gateway
            assert gw is not None
            return True if gw.locker_banks.board_online(LOCKER_BOARD) else None

        await until(probe, "the watch read the lock board")

    async def stop_gateway(self) -> None:
        """The gateway goes down (the cabinet, the line and the cloud stay)."""
        assert self.c.gateway is not None
        await self.c.gateway.stop()
        self.c.gateway = None

    async def start_gateway(self) -> None:
        """A new gateway process on the same data directory."""
        gw = await self.c.restart_gateway()
        await asyncio.wait_for(gw.ready.wait(), 15)


async def _login(api: Api, c: Community, login: str) -> str:
    account = c.account(login)
    return await api.login(account.login, account.password)


@pytest.fixture
async def site(broker: Any, database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    c = LockerCommunity(
        tmp_path / "community",
        broker_host=broker.host,
        broker_port=broker.port,
        broker_protocol=broker.protocol,
        database_url=database_url,
        fast_passwords=True,
        isolate_topics=True,
        gateway_id=f"gw-{uuid.uuid4().hex[:8]}",
    )
    await c.start()
    try:
        assert c.gateway is not None
        await asyncio.wait_for(c.gateway.ready.wait(), 15)
        async with aiohttp.ClientSession() as http:
            api = Api(c.url, http)
            s = Site(
                c,
                api,
                engineer=await _login(api, c, "engineer"),
                courier=await _login(api, c, "courier"),
                resident=await _login(api, c, "li"),
            )
            banks = (await s.get("/api/v1/locker-banks"))["banks"]
            (bank,) = [b for b in banks if b["local_id"] == BANK and b["gateway"] == c.gateway_id]
            s.bank = bank["id"]
            await s.board_watched()
            assert await s.compartments() == {no: IN_SERVICE for no in COMPARTMENTS}
            yield s
    finally:
        await c.stop()


# -- 1. a door that fails to open during a deposit -----------------------------------------------


@pytest.mark.parametrize("jammed", [1, 3], ids=["reassigned", "three_jammed_refused"])
async def test_a_jammed_door_is_retried_once_then_out_of_service(site: Site, jammed: int) -> None:
    # The smallest free S compartments (5, 6, 7) are allocated first; their hooks do not let go.
    stuck = list(range(5, 5 + jammed))
    for no in stuck:
        site.cabinet.jam(no)
    parcel, command = await site.deposit("S")
    for no in stuck:
        assert site.cabinet.pulses(no) == 2  # pulsed, read back latched, retried once; no more

    alarms = await site.wait_alarms(
        "locker_jammed", lambda a: len(a) == jammed, f"{jammed} locker_jammed"
    )
    assert [view(a) for a in alarms] == [
        ("locker_jammed", BANK, no, LOCKER_BOARD, False, True) for no in stuck
    ]
    await site.wait_compartments({no: ("out_of_service", "jammed") for no in stuck})

    if jammed == 1:
        # The parcel went on to compartment 6: the courier's deposit succeeded.
        assert command["status"] == "opened", command
        assert site.cabinet.door_open(6)
        assert site.cabinet.pulses(6) == 1
        site.cabinet.put(6)
        site.cabinet.close(6)
        found = await site.wait_parcel(parcel, "waiting")
        assert found["compartment"] == 6
    else:
        # Three compartments tried, all jammed: refused, nothing left of the parcel.
        assert (command["status"], command["reason"]) == ("failed", "jammed")
        found = await site.wait_parcel(parcel, "failed")
        assert (found["reason"], found["compartment"]) == ("jammed", None)
        assert site.cabinet.pulses(8) == 0
    # The compartment state is the watch's business no more: still out after more passes.
    assert (await site.compartments())[5] == ("out_of_service", "jammed")

    # A courier sees free counts but no compartment detail, and no alarms at all.
    banks = (await site.get("/api/v1/locker-banks", site.courier))["banks"]
    (mine,) = [b for b in banks if b["id"] == site.bank]
    assert mine["compartments"] is None
    assert mine["free"]["S"] <= 6 - jammed  # out-of-service compartments are never free
    status, _ = await site.api.call("GET", "/api/v1/alarms", site.courier)
    assert status == 404  # the matrix: forbidden reads as not found
    await site.settled()


# -- 2. a door left open after a legitimate open -------------------------------------------------


@pytest.mark.parametrize("who", ["courier", "recipient"])
async def test_a_door_left_open_raises_an_alarm_cleared_when_it_closes(
    site: Site, who: str
) -> None:
    no = 5
    if who == "courier":
        started = time.time_ns() // 1_000_000
        parcel, command = await site.deposit("S")
        assert command["status"] == "opened", command
        # The courier walks away from the open door, parcel in hand.
    else:
        parcel = await site.deposited("S", no)
        started = time.time_ns() // 1_000_000
        command = await site.pickup(parcel)
        assert command["status"] == "opened", command
        site.cabinet.take(no)  # the recipient takes the parcel and walks away
    assert site.cabinet.door_open(no)

    (raised,) = await site.wait_alarms("locker_left_open", lambda a: len(a) == 1, "left open")
    assert view(raised) == ("locker_left_open", BANK, no, LOCKER_BOARD, False, True)
    assert raised["detail"]["ts"] - started >= LEFT_OPEN_MS  # not before left_open_s
    # The compartment's state is unchanged: in service, nothing out of order.
    assert await site.compartments() == {n: IN_SERVICE for n in COMPARTMENTS}
    if who == "courier":
        # An open door is not timed out, and nothing is recorded while it is open.
        assert (await site.parcel(parcel))["state"] == "requested"
        site.cabinet.put(no)
    site.cabinet.close(no)

    alarms = await site.wait_alarms(
        "locker_left_open", lambda a: len(a) == 2, "left open, then cleared"
    )
    assert [view(a) for a in alarms] == [
        ("locker_left_open", BANK, no, LOCKER_BOARD, False, False),  # cleared by the next
        ("locker_left_open", BANK, no, LOCKER_BOARD, True, False),
    ]
    assert alarms[0]["id"] == raised["id"]
    assert alarms[0]["cleared_at"] >= alarms[0]["created_at"]
    if who == "courier":
        found = await site.wait_parcel(parcel, "waiting")  # recorded once the door closed
        assert found["compartment"] == no
        held = {no: OCCUPIED}
    else:
        assert (await site.parcel(parcel))["state"] == "picked_up"
        held = {}
    assert await site.compartments() == {n: held.get(n, IN_SERVICE) for n in COMPARTMENTS}
    assert [a for a in await site.alarms() if a["cleared_at"] is None] == []
    await site.settled()


# -- 3. infrared and the record disagreeing ------------------------------------------------------


@pytest.mark.parametrize("case", ["free_but_sensed", "occupied_but_empty", "left_in_at_pickup"])
async def test_a_sensor_mismatch_takes_the_compartment_out_of_service(
    site: Site, case: str
) -> None:
    parcel = None
    if case == "free_but_sensed":
        no = 1  # a free mini compartment, door latched; the sensor says something is inside
        site.cabinet.stick_infrared(no, True)
    elif case == "occupied_but_empty":
        no = 5
        parcel = await site.deposited("S", no)
        site.cabinet.stick_infrared(no, False)  # the parcel is recorded; the sensor sees nothing
    else:
        no = 5
        parcel = await site.deposited("S", no)
        command = await site.pickup(parcel)
        assert command["status"] == "opened", command
        site.cabinet.close(no)  # shut again with the parcel still inside

    (alarm,) = await site.wait_alarms(
        "locker_sensor_mismatch", lambda a: len(a) == 1, "locker_sensor_mismatch"
    )
    assert view(alarm) == ("locker_sensor_mismatch", BANK, no, LOCKER_BOARD, False, True)
    await site.wait_compartments({no: ("out_of_service", "sensor_mismatch")})
    if case == "occupied_but_empty":
        assert parcel is not None
        assert (await site.parcel(parcel))["state"] == "waiting"  # the record stays
    elif case == "left_in_at_pickup":
        assert parcel is not None
        assert (await site.parcel(parcel))["state"] == "picked_up"
    assert [a["kind"] for a in await site.alarms() if a["kind"] in LOCKER_KINDS] == [
        "locker_sensor_mismatch"
    ]
    await site.settled()


# -- 4. a board offline --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["vanished", "power_off"])
async def test_an_offline_board_is_not_allocated_and_its_alarm_clears(site: Site, how: str) -> None:
    line = site.c.buses[LINE]
    assert site.c.cabinet is not None
    address = site.c.cabinet.address
    if how == "vanished":
        line.inject(address, Fault.VANISH, duration_s=3600)
    else:
        site.cabinet.power(False)

    (alarm,) = await site.wait_alarms("lockboard_offline", lambda a: len(a) == 1, "offline")
    assert view(alarm) == ("lockboard_offline", BANK, None, LOCKER_BOARD, False, True)

    # Every compartment of the bank is on the silent board: the deposit is refused board_offline
    # (docs/parcels.md: none free at all → no_free_compartment, only on silent boards →
    # board_offline) without a pulse.
    parcel, command = await site.deposit("S")
    assert (command["status"], command["reason"]) == ("failed", "board_offline")
    found = await site.wait_parcel(parcel, "failed")
    assert (found["reason"], found["compartment"]) == ("board_offline", None)
    assert sum(site.cabinet.pulses(no) for no in COMPARTMENTS) == 0
    # Not allocated is not out of service: the compartments' states are unchanged.
    assert await site.compartments() == {no: IN_SERVICE for no in COMPARTMENTS}

    if how == "vanished":
        line.clear(address, Fault.VANISH)
    else:
        site.cabinet.power(True)
    alarms = await site.wait_alarms(
        "lockboard_offline", lambda a: len(a) == 2, "offline, then cleared"
    )
    assert [view(a) for a in alarms] == [
        ("lockboard_offline", BANK, None, LOCKER_BOARD, False, False),
        ("lockboard_offline", BANK, None, LOCKER_BOARD, True, False),
    ]
    assert alarms[0]["id"] == alarm["id"]
    assert [a for a in await site.alarms() if a["cleared_at"] is None] == []

    # It answers again: its compartments are allocated again.
    await site.deposited("S", 5)
    assert await site.compartments() == {no: IN_SERVICE for no in COMPARTMENTS} | {5: OCCUPIED}
    await site.settled()


# -- 5. a hook opened without a command ----------------------------------------------------------


async def _left_open_timer_ran_out(opened_at: float) -> None:
    """Let ``left_open_s`` pass since the last commanded open (at ``opened_at``, time.time()).

    A deliberate wait on a clock, not a hope: a forced door is no legitimate open, and the test
    proves no ``locker_left_open`` follows it even once the last real open is long enough ago.
    """
    await asyncio.sleep(max(0.0, opened_at + RULES["left_open_s"] + 0.5 - time.time()))


@pytest.mark.parametrize("case", ["free", "occupied", "deposit_empty"])
async def test_a_forced_door_takes_the_compartment_out_of_service(site: Site, case: str) -> None:
    parcel = None
    if case == "free":
        no = 1
    elif case == "occupied":
        no = 5
        parcel = await site.deposited("S", no)
        await _left_open_timer_ran_out(time.time())
    else:
        no = 5
        parcel, command = await site.deposit("S")
        assert command["status"] == "opened", command
        opened_at = time.time()
        site.cabinet.close(no)  # shut with nothing inside: the deposit waits for the courier
        await site.wait_parcel(parcel, "empty")
        await _left_open_timer_ran_out(opened_at)
    site.cabinet.force(no)

    (alarm,) = await site.wait_alarms("locker_forced", lambda a: len(a) == 1, "locker_forced")
    assert view(alarm) == ("locker_forced", BANK, no, LOCKER_BOARD, False, True)
    await site.wait_compartments({no: ("out_of_service", "forced")})
    await site.settled()  # every event up to the alarm arrived: nothing else was raised
    assert [a["kind"] for a in await site.alarms() if a["kind"] in LOCKER_KINDS] == [
        "locker_forced"
    ]
    if case == "occupied":
        assert parcel is not None
        assert (await site.parcel(parcel))["state"] == "waiting"
        # Out of service keeps its parcel: the recipient can still collect it.
        command = await site.pickup(parcel)
        assert command["status"] == "opened", command
        await site.wait_parcel(parcel, "picked_up")
        assert (await site.compartments())[no] == ("out_of_service", "forced")
    elif case == "deposit_empty":
        assert parcel is not None
        assert (await site.parcel(parcel))["state"] == "empty"


# -- 6. reconciliation after a restart or a power loss -------------------------------------------


@pytest.mark.parametrize("how", ["restart", "power_loss"])
async def test_reconciliation_after_the_gateway_was_down(site: Site, how: str) -> None:
    held = await site.deposited("M", 11)  # a parcel waiting in compartment 11
    if how == "restart":
        # A deposit whose door is open for the courier when the gateway goes down.
        parcel, command = await site.deposit("S")
        assert command["status"] == "opened", command
        await site.stop_gateway()
        site.cabinet.put(5)  # meanwhile the courier puts the parcel in and shuts the door
        site.cabinet.close(5)
    else:
        # The power fails while the deposit's door is being opened: the solenoid fires, the
        # board dies before it answers, the gateway goes down before it learns anything.
        site.cabinet.cut_power_after_pulse(5)
        parcel, command_id = await site.request_deposit("S")
        assert await asyncio.to_thread(site.cabinet.power_cut.wait, WITHIN)
        await site.stop_gateway()
        assert site.cabinet.door_open(5)
    # While the gateway is down: compartment 11 is emptied, and something is left in the free
    # compartment 1, both doors shut again before anyone looks.
    site.cabinet.force(11)
    site.cabinet.take(11)
    site.cabinet.close(11)
    site.cabinet.force(1)
    site.cabinet.put(1)
    site.cabinet.close(1)
    if how == "power_loss":
        site.cabinet.power(True)
    await site.start_gateway()

    (reconciled,) = await site.wait_alarms(
        "locker_reconciled", lambda a: len(a) == 1, "locker_reconciled"
    )
    assert view(reconciled) == ("locker_reconciled", BANK, None, LOCKER_BOARD, False, True)
    assert reconciled["detail"]["compartments"] == [1, 5, 11]
    mismatches = await site.wait_alarms(
        "locker_sensor_mismatch", lambda a: len(a) == 2, "two sensor mismatches"
    )
    assert sorted(view(a) for a in mismatches) == [
        ("locker_sensor_mismatch", BANK, no, LOCKER_BOARD, False, True) for no in (1, 11)
    ]
    out = ("out_of_service", "sensor_mismatch")
    # After the restart, the deposit shut on its parcel is recorded: compartment 5 holds it.
    await site.wait_compartments({1: out, 11: out} | ({5: OCCUPIED} if how == "restart" else {}))
    # The doors were shut again before the gateway looked: no forced door can be told.
    assert await site.alarms("locker_forced") == []
    assert (await site.parcel(held))["state"] == "waiting"  # the record stays: an engineer's call

    if how == "restart":
        found = await site.wait_parcel(parcel, "waiting")  # closed with something inside
    else:
        # The command died with the gateway; the reconciled deposit waits for the courier at
        # the open door and is recorded when it is shut on the parcel.
        ended = await site.api.wait_terminal(site.courier, command_id)
        assert (ended["status"], ended["reason"]) == ("failed", "interrupted")
        assert (await site.wait_parcel(parcel, "failed"))["reason"] == "interrupted"
        assert site.cabinet.pulses(5) == 1  # never pulsed again
        site.cabinet.put(5)
        site.cabinet.close(5)
        found = await site.wait_parcel(parcel, "waiting")
    assert found["compartment"] == 5
    assert (await site.compartments())[5] == OCCUPIED
    assert len(await site.alarms("locker_reconciled")) == 1  # once, at the first read
    await site.settled()
