"""Signed parcel commands through the gateway daemon with a locker bank configured.

The whole gateway runs with bank ``A`` (16 compartments on one simulated lock board, see
:func:`tests.gateway.harness.locker_overrides`); a fake cloud sends commands signed with the test
cloud key and reads the statuses and events the gateway reports:

* ``parcel.deposit`` → ``acknowledged``, ``opened`` (the board's door opened), and once the
  courier put the parcel in and shut the door, ``parcel.deposited`` (via ``command``);
  ``parcel.pickup`` → ``opened`` and ``parcel.picked_up`` (via ``remote``);
* a deposit closed empty → ``parcel.deposit_empty``; ``parcel.reopen`` → ``opened``;
  ``parcel.cancel`` → ``completed`` and ``parcel.cancelled``;
* refusals end ``failed`` with the flow's reason without touching a lock (``bad_args``,
  ``not_found``, ``duplicate``, ``not_your_parcel``, ``not_overdue``, ``wrong_state``);
* the replay guard refuses a parcel command naming an unknown bank (``unknown_target``), a door
  id in a parcel command, and every parcel command at a gateway without banks
  (``unsupported_action``);
* ``/healthz`` has a ``lockers`` section; a missing or readable code key stops the start.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from cloud_sync.protocol import Event
from courtyard.config import load_settings
from gateway import ConfigError, DoorSettings, Gateway, GatewaySettings
from tests.gateway.harness import (
    LOCKER_BOARD,
    CommandSigner,
    FakeCloud,
    code_key_file,
    lock_board_line,
    locker_overrides,
    unique,
)
from tests.gateway.locker_site import Cabinet
from trust import SigningKey

_TERMINAL = {"opened", "completed", "failed", "rejected"}


@dataclass
class ParcelSite:
    """A running gateway with bank A on a simulated board, a fake cloud and a signer."""

    settings: GatewaySettings
    gateway: Gateway
    cloud: FakeCloud
    signer: CommandSigner
    cabinet: Cabinet

    async def send(self, action: str, args: dict[str, int | str], target: str = "A") -> str:
        """A freshly signed parcel command; its id."""
        command_id, payload = self.signer.unlock(target, action=action, args=args)
        await self.cloud.send(payload)
        return command_id

    async def outcome(self, command_id: str) -> Event:
        """The command's terminal ``command.status`` event (``completed`` included)."""

        def done(cloud: FakeCloud) -> Event | None:
            found = cloud.find("command.status", command=command_id)
            return next((e for e in found if e.data["status"] in _TERMINAL), None)

        result: Event = await self.cloud.wait_for(done)
        return result

    def statuses(self, command_id: str) -> list[str]:
        return [e.data["status"] for e in self.cloud.find("command.status", command=command_id)]

    def pulses(self, no: int) -> int:
        with self.cabinet.hands() as board:
            return board.compartment(no).pulses

    def door_open(self, no: int) -> bool:
        with self.cabinet.hands() as board:
            return board.compartment(no).door_open

    def put_and_close(self, no: int) -> None:
        with self.cabinet.hands() as board:
            board.put_parcel(no)
            board.close_door(no)

    def close(self, no: int) -> None:
        with self.cabinet.hands() as board:
            board.close_door(no)


def _deposit_args(parcel: str, size: str = "M", **extra: int | str) -> dict[str, int | str]:
    args: dict[str, int | str] = {
        "parcel": parcel,
        "size": size,
        "unit": "1-201",
        "courier": 42,
        "company": "SF Express",
    }
    args.update(extra)
    return args


@pytest.fixture
async def parcel_site(
    tmp_path: Path,
    gateway_settings: Callable[..., GatewaySettings],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
    start_gateway: Callable[..., Awaitable[Gateway]],
    cloud_key: SigningKey,
) -> AsyncIterator[ParcelSite]:
    key_file, _ = code_key_file(tmp_path / "parcel-keys")
    with lock_board_line() as (server, cabinet):
        settings = gateway_settings(
            doors=[DoorSettings(id="door-1", device=unique("dev"))],
            **locker_overrides(server.url, key_file, terminal=unique("term")),
        )
        cloud = await fake_cloud(settings)
        gw = await start_gateway(settings)
        yield ParcelSite(settings, gw, cloud, CommandSigner(cloud_key, settings.id), cabinet)
        await gw.stop()


async def test_deposit_then_remote_pickup(parcel_site: ParcelSite) -> None:
    site = parcel_site
    parcel = uuid.uuid4().hex
    deposit = await site.send("parcel.deposit", _deposit_args(parcel))
    assert (await site.outcome(deposit)).data["status"] == "opened"
    assert site.statuses(deposit) == ["acknowledged", "opened"]
    assert site.door_open(11)  # the smallest M compartment
    assert site.pulses(11) == 1

    site.put_and_close(11)
    deposited = await site.cloud.wait_event("parcel.deposited", parcel=parcel)
    assert deposited.data["via"] == "command"
    assert (deposited.data["courier"], deposited.data["company"]) == (42, "SF Express")
    assert (deposited.data["compartment"], deposited.data["unit"]) == (11, "1-201")

    # The same parcel id again: refused, nothing opens.
    duplicate = await site.send("parcel.deposit", _deposit_args(parcel))
    assert (await site.outcome(duplicate)).data["reason"] == "duplicate"

    pickup = await site.send("parcel.pickup", {"parcel": parcel})
    assert (await site.outcome(pickup)).data["status"] == "opened"
    assert site.pulses(11) == 2
    picked = await site.cloud.wait_event("parcel.picked_up", parcel=parcel)
    assert (picked.data["via"], picked.data["fee_cents"], picked.data["fee_state"]) == (
        "remote",
        0,
        "owed",
    )
    # Exactly one open per pickup: a second pickup finds the parcel gone.
    again = await site.send("parcel.pickup", {"parcel": parcel})
    assert (await site.outcome(again)).data["reason"] == "already_claimed"
    assert site.pulses(11) == 2


async def test_empty_deposit_reopened_then_cancelled(parcel_site: ParcelSite) -> None:
    site = parcel_site
    parcel = uuid.uuid4().hex
    deposit = await site.send("parcel.deposit", _deposit_args(parcel, "L"))
    assert (await site.outcome(deposit)).data["status"] == "opened"
    site.close(15)  # nothing inside
    await site.cloud.wait_event("parcel.deposit_empty", parcel=parcel)

    reopen = await site.send("parcel.reopen", {"parcel": parcel})
    assert (await site.outcome(reopen)).data["status"] == "opened"
    assert site.pulses(15) == 2
    cancel = await site.send("parcel.cancel", {"parcel": parcel})
    completed = await site.outcome(cancel)
    assert completed.data["status"] == "completed"
    assert site.statuses(cancel) == ["acknowledged", "completed"]
    cancelled = await site.cloud.wait_event("parcel.cancelled", parcel=parcel)
    assert cancelled.data["reason"] == "courier"

    late = await site.send("parcel.reopen", {"parcel": parcel})
    assert (await site.outcome(late)).data["reason"] == "wrong_state"
    assert site.pulses(15) == 2


async def test_refusals_touch_no_lock(parcel_site: ParcelSite) -> None:
    site = parcel_site
    cases: list[tuple[str, dict[str, int | str], str]] = [
        ("parcel.deposit", _deposit_args("NOT-HEX"), "bad_args"),
        ("parcel.deposit", _deposit_args(uuid.uuid4().hex, "XL"), "bad_args"),
        ("parcel.deposit", _deposit_args(uuid.uuid4().hex, extra=1), "bad_args"),
        ("parcel.pickup", {"parcel": uuid.uuid4().hex, "courier": 1}, "bad_args"),
        ("parcel.pickup", {"parcel": uuid.uuid4().hex}, "not_found"),
        ("parcel.retrieve", {"parcel": uuid.uuid4().hex, "courier": 42}, "not_found"),
        ("parcel.cancel", {"parcel": uuid.uuid4().hex}, "not_found"),
    ]
    for action, args, reason in cases:
        command_id = await site.send(action, args)
        outcome = await site.outcome(command_id)
        assert (action, outcome.data["status"], outcome.data.get("reason")) == (
            action,
            "failed",
            reason,
        )
    assert all(site.pulses(no) == 0 for no in range(1, 17))

    # Retrieval: only by the depositing courier, only after the retention time.
    parcel = uuid.uuid4().hex
    assert (await site.outcome(await site.send("parcel.deposit", _deposit_args(parcel, "S")))).data[
        "status"
    ] == "opened"
    site.put_and_close(5)
    await site.cloud.wait_event("parcel.deposited", parcel=parcel)
    stranger = await site.send("parcel.retrieve", {"parcel": parcel, "courier": 43})
    assert (await site.outcome(stranger)).data["reason"] == "not_your_parcel"
    early = await site.send("parcel.retrieve", {"parcel": parcel, "courier": 42})
    assert (await site.outcome(early)).data["reason"] == "not_overdue"
    assert site.pulses(5) == 1


async def test_the_replay_guard_refuses_unknown_banks(parcel_site: ParcelSite) -> None:
    site = parcel_site
    for target in ("B", "door-1", LOCKER_BOARD):
        command_id = await site.send("parcel.pickup", {"parcel": uuid.uuid4().hex}, target=target)
        outcome = await site.outcome(command_id)
        assert (outcome.data["status"], outcome.data["reason"]) == ("rejected", "unknown_target")
    # A bank id is no door either.
    unlock = await site.send("door.unlock", {}, target="A")
    assert (await site.outcome(unlock)).data["reason"] == "unknown_target"
    assert all(site.pulses(no) == 0 for no in range(1, 17))


async def test_health_reports_the_lockers(parcel_site: ParcelSite) -> None:
    site = parcel_site
    parcel = uuid.uuid4().hex
    await site.outcome(await site.send("parcel.deposit", _deposit_args(parcel, "mini")))
    site.put_and_close(1)
    await site.cloud.wait_event("parcel.deposited", parcel=parcel)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{site.gateway.http_port}/healthz") as response,
    ):
        report = await response.json()
    lockers = report["lockers"]
    assert set(lockers) == {"A"}
    bank = lockers["A"]
    assert bank["compartments"] == {"free": 15, "reserved": 0, "occupied": 1, "out_of_service": 0}
    assert bank["boards"] == {LOCKER_BOARD: "online"}
    terminal = site.settings.lockers[0].terminal
    assert bank["terminal"] == {"device": terminal, "state": "unknown", "courier_session": False}
    assert report["tasks"]["locker-watch"] == "running"
    assert report["tasks"][f"terminal:{terminal}"] == "running"
    assert parcel not in str(report)


async def test_a_gateway_without_banks_refuses_parcel_commands(
    gateway_settings: Callable[..., GatewaySettings],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
    start_gateway: Callable[..., Awaitable[Gateway]],
    cloud_key: SigningKey,
) -> None:
    settings = gateway_settings(doors=[DoorSettings(id="door-1", device=unique("dev"))])
    cloud = await fake_cloud(settings)
    gw = await start_gateway(settings)
    signer = CommandSigner(cloud_key, settings.id)
    command_id, payload = signer.unlock(
        "A", action="parcel.pickup", args={"parcel": uuid.uuid4().hex}
    )
    await cloud.send(payload)
    outcome = await cloud.outcome(command_id)
    assert (outcome.data["status"], outcome.data["reason"]) == ("rejected", "unsupported_action")
    assert "lockers" not in gw.health()


async def test_the_code_key_must_be_there_and_private(
    tmp_path: Path, gateway_settings: Callable[..., GatewaySettings]
) -> None:
    with lock_board_line() as (server, _cabinet):
        missing = gateway_settings(**locker_overrides(server.url, tmp_path / "no-such.key"))
        with pytest.raises(ConfigError, match=r"parcels\.code_key_file"):
            await asyncio.wait_for(Gateway(missing).start(), 10)
        key_file, _ = code_key_file(tmp_path / "open-keys")
        key_file.chmod(0o644)
        readable = gateway_settings(**locker_overrides(server.url, key_file))
        with pytest.raises(ConfigError, match="too open"):
            await asyncio.wait_for(Gateway(readable).start(), 10)
        key_file.write_bytes(b"short")
        key_file.chmod(0o600)
        short = gateway_settings(**locker_overrides(server.url, key_file))
        with pytest.raises(ConfigError, match="32 bytes"):
            await asyncio.wait_for(Gateway(short).start(), 10)


def test_the_operations_locker_example_loads(tmp_path: Path) -> None:
    """docs/operations.md's locker block, appended to its gateway file, is a valid configuration."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text("utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    gateway_file = next(b for b in blocks if b.startswith("# gateway.toml\n"))
    lockers = next(b for b in blocks if b.startswith("# parcel lockers"))
    path = tmp_path / "gateway.toml"
    path.write_text(gateway_file + "\n" + lockers)
    gateway = load_settings(path).gateway
    assert gateway is not None
    (bank,) = gateway.lockers
    assert (bank.id, bank.terminal) == ("A", "term-a")
    assert [(c.no, c.lock, c.size) for c in bank.compartments] == [
        (1, 1, "mini"),
        (5, 5, "S"),
        (11, 11, "M"),
        (15, 15, "L"),
    ]
    assert gateway.parcels.code_key_file == Path("/var/lib/courtyard/gateway/keys/parcel-code.key")
    assert [(b.id, b.bus, b.board) for b in gateway.lockboards] == [("bank-a-0", "lockers-a", 0)]
