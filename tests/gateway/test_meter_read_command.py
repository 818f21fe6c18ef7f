"""Signed ``meter.read`` commands through a running gateway with meters on a simulated DL/T 645 bus.

* a read of a configured meter reports ``acknowledged``, then the ``meter.reading``, then
  ``completed``, in that outbox (and so cloud) order;
* a read of a silent meter ends ``failed`` with the reason, and records no reading;
* a ``meter.read`` naming a door or an unknown meter, and a ``door.unlock`` naming a meter, are
  rejected ``unknown_target``; a replayed read is refused ``replayed`` and reads nothing;
* the handler itself: a read interrupted by the gateway stopping ends ``failed``/``interrupted``,
  and every bus error becomes its ``failed`` reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import cast

import pytest

from cloud_sync.protocol import CommandStatus, Event
from devices.serialbus import BusServer, Fault
from gateway import CommandLog, DoorSettings, Gateway, GatewayMetrics, GatewaySettings, Outbox
from gateway.bus_errors import (
    BusClosedError,
    DeviceReplyError,
    ExchangeError,
    ExpiredError,
    NoReplyError,
    PortError,
    UnknownDeviceError,
)
from gateway.commands import MeterRead, read_failure
from gateway.meters import MeterReader, Reading
from gateway.replay import ReplayGuard
from gateway.store import Store
from tests.gateway.bus_sim import bus_settings, make_meters, meter_settings, plate, serve
from tests.gateway.harness import TIMEOUT, CommandSigner, FakeCloud, now_ms, unique
from trust import SigningKey

#: Scheduled polls once a day, first due at a random point of it: none during a test.
_RARELY_S = 86_400
_TERMINAL = {"completed", "failed", "rejected", "opened", "released_not_opened"}


@dataclass
class MeterSite:
    """A running gateway with meters m1, m2 on a simulated line, door-1, a fake cloud, a signer."""

    server: BusServer
    settings: GatewaySettings
    gateway: Gateway
    cloud: FakeCloud
    signer: CommandSigner

    async def read(self, meter: str, **kw: object) -> tuple[str, bytes]:
        """Send a freshly signed ``meter.read`` of ``meter``: (command id, the signed bytes)."""
        command_id, payload = self.signer.unlock(meter, action="meter.read", **kw)
        await self.cloud.send(payload)
        return command_id, payload


@pytest.fixture
async def meter_site(
    gateway_settings: Callable[..., GatewaySettings],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
    start_gateway: Callable[..., Awaitable[Gateway]],
    cloud_key: SigningKey,
) -> AsyncIterator[MeterSite]:
    with serve(make_meters(2)) as server:
        settings = gateway_settings(
            doors=[DoorSettings(id="door-1", device=unique("dev"))],
            buses=[bus_settings(server.url, timeout_ms=150, retries=1, offline_after=2)],
            meters=meter_settings(2, interval_s=_RARELY_S),
        )
        cloud = await fake_cloud(settings)
        gw = await start_gateway(settings)
        yield MeterSite(server, settings, gw, cloud, CommandSigner(cloud_key, settings.id))
        await gw.stop()  # before the line goes away


def statuses(cloud: FakeCloud, command_id: str) -> list[Event]:
    """The ``command.status`` events of one command, in seq order."""
    return cloud.find("command.status", command=command_id)


async def finished(cloud: FakeCloud, command_id: str) -> Event:
    """The command's terminal ``command.status`` event, waiting for it if need be."""

    def done(c: FakeCloud) -> Event | None:
        return next((e for e in statuses(c, command_id) if e.data["status"] in _TERMINAL), None)

    event: Event = await cloud.wait_for(done)
    return event


async def test_a_read_reports_acknowledged_then_the_reading_then_completed(
    meter_site: MeterSite,
) -> None:
    cloud = meter_site.cloud
    command_id, _ = await meter_site.read("m1")

    done = await finished(cloud, command_id)

    assert done.data == {"command": command_id, "status": "completed"}
    acknowledged, completed = statuses(cloud, command_id)
    assert acknowledged.data == {"command": command_id, "status": "acknowledged"}
    assert completed == done
    [reading] = [e for e in cloud.find("meter.reading") if acknowledged.seq < e.seq < completed.seq]
    assert reading.data["meter"] == "m1"
    assert Decimal(reading.data["values"]["energy_kwh"]) == Decimal("1001.00")
    # Nothing of this command's went out of order: the outbox seq is the order of the commits.
    assert acknowledged.seq < reading.seq < completed.seq
    assert meter_site.gateway.commands.status(command_id) is CommandStatus.COMPLETED


async def test_a_read_of_a_silent_meter_fails_with_the_reason_and_no_reading(
    meter_site: MeterSite,
) -> None:
    meter_site.server.inject(plate(2), Fault.VANISH, duration_s=60)
    cloud = meter_site.cloud
    command_id, _ = await meter_site.read("m2")

    done = await finished(cloud, command_id)

    assert done.data == {"command": command_id, "status": "failed", "reason": "no_reply"}
    assert [e.data["status"] for e in statuses(cloud, command_id)] == ["acknowledged", "failed"]
    assert cloud.find("meter.reading", meter="m2") == []
    assert meter_site.gateway.commands.reason(command_id) == "no_reply"


@pytest.mark.parametrize(
    ("action", "target"),
    [("meter.read", "door-1"), ("meter.read", "m99"), ("door.unlock", "m1")],
)
async def test_a_target_the_action_does_not_apply_to_is_rejected(
    meter_site: MeterSite, action: str, target: str
) -> None:
    command_id, payload = meter_site.signer.unlock(target, action=action)
    await meter_site.cloud.send(payload)

    done = await finished(meter_site.cloud, command_id)

    assert done.data == {"command": command_id, "status": "rejected", "reason": "unknown_target"}
    assert meter_site.gateway.commands.status(command_id) is None  # never recorded
    # The refusal kept the seq: the next command (signed with the next seq) runs.
    ok, _ = await meter_site.read("m1")
    assert (await finished(meter_site.cloud, ok)).data["status"] == "completed"


async def test_a_replayed_read_is_refused_and_reads_nothing(meter_site: MeterSite) -> None:
    cloud = meter_site.cloud
    command_id, payload = await meter_site.read("m1")
    await finished(cloud, command_id)
    readings = meter_site.gateway.buses.meters.readings

    await cloud.send(payload)

    alarm = await cloud.wait_event("gateway.alarm", reason="replayed")
    assert alarm.data == {"kind": "bad_command", "reason": "replayed", "command": command_id}
    assert [e.data["status"] for e in statuses(cloud, command_id)] == ["acknowledged", "completed"]
    assert meter_site.gateway.buses.meters.readings == readings


# -- the handler on its own: interruption and failure reasons ----------------------------------


class _StuckReader:
    """Stands in for the MeterReader: a read that never ends, and says when it began."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()

    async def read_now(self, meter_id: str, *, within_s: float = 30.0) -> Reading:
        self.reading.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_read_cut_short_by_the_gateway_stopping_fails_interrupted(tmp_path: Path) -> None:
    key = SigningKey.generate()
    signer = CommandSigner(key, "gw-handler")
    with Store(tmp_path / "gateway.db", "gw-handler") as store:
        outbox = Outbox(store)
        commands = CommandLog(store, outbox, now_ms, GatewayMetrics())
        guard = ReplayGuard(store, {key.kid: key.verify_key}, "gw-handler", {"meter.read": ["m1"]})
        body = guard.verify(signer.sign(signer.body("m1", action="meter.read")), now_ms())
        with store.transaction() as tx:
            guard.accept(tx, body, now_ms())
        reader = _StuckReader()
        handler = MeterRead(cast(MeterReader, reader), commands, now_ms)

        task = asyncio.create_task(handler(body))
        await asyncio.wait_for(reader.reading.wait(), TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert (commands.status(body.id), commands.reason(body.id)) == (
            CommandStatus.FAILED,
            "interrupted",
        )
        assert [e.data["status"] for e in outbox.pending(10)] == ["acknowledged", "failed"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NoReplyError("line-a", "m1", "no reply in 2 attempts"), "no_reply"),
        (ExpiredError("line-a", "m1", "deadline passed while queued"), "bus_unavailable"),
        (DeviceReplyError("line-a", "m1", "ERR 02H"), "device_refused"),
        (ExchangeError("line-a", "m1", "odd"), "bus_error"),
        (BusClosedError("line-a", "the bus was closed"), "interrupted"),
        (PortError("line-a", "unplugged"), "bus_error"),
        (UnknownDeviceError("m9"), "unknown_device"),
        (RuntimeError("a bug"), "internal_error"),
    ],
)
def test_each_read_error_has_its_failed_reason(error: Exception, reason: str) -> None:
    assert read_failure(error) == reason
