"""Signed commands through a running gateway: refusals reach the cloud, replays move nothing.

And the receiver's wiring: every action the replay guard lets through has a handler."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from cloud_sync.protocol import CommandBody, CommandStatus, MqttLink
from devices.door import PulseCommand, parse_command
from gateway import CommandLog, GatewayMetrics, Outbox, ReplayGuard, Store
from gateway.commands import CommandHandler, CommandReceiver
from tests.conftest import BrokerInfo
from tests.gateway.conftest import GatewaySite
from tests.gateway.harness import TIMEOUT, CommandSigner, now_ms, subscribed_link
from trust import SigningKey


async def test_replay_after_restart_is_refused_and_the_strike_stays(
    gateway_site: GatewaySite,
) -> None:
    sim = gateway_site.doors["door-1"]
    command_id, payload = gateway_site.signer.unlock("door-1", lifetime_ms=60_000)
    await gateway_site.cloud.send(payload)
    assert (await gateway_site.cloud.outcome(command_id)).data["status"] == "opened"
    assert sim.strike_pulses == 1

    gw = await gateway_site.restart()
    # A rebooted controller has forgotten the command id, so only the gateway can stop a replay.
    sim.reboot()
    await asyncio.to_thread(sim.wait_for, lambda s: s.online, TIMEOUT)
    await gateway_site.cloud.send(payload)

    alarm = await gateway_site.cloud.wait_event("gateway.alarm", reason="replayed")
    assert alarm.data == {"kind": "bad_command", "reason": "replayed", "command": command_id}
    statuses = [
        e.data["status"] for e in gateway_site.cloud.find("command.status", command=command_id)
    ]
    assert "rejected" not in statuses
    assert sim.strike_pulses == 1
    assert 'courtyard_gateway_commands_refused_total{reason="replayed"} 1.0' in (
        gw.metrics.render().decode()
    )


async def test_gateway_restart_announces_itself_with_a_continuing_seq(
    gateway_site: GatewaySite,
) -> None:
    first = await gateway_site.cloud.wait_event("gateway.started")
    await gateway_site.restart()

    await gateway_site.cloud.wait_for(lambda c: len(c.find("gateway.started")) == 2)
    again = gateway_site.cloud.find("gateway.started")[1]
    assert again.data == first.data
    assert again.seq > first.seq


async def test_command_delivered_after_its_expiry_is_rejected(gateway_site: GatewaySite) -> None:
    # As if the broker had held it through an outage: issued 45 s ago, valid for 30 s.
    command = await gateway_site.unlock(issued_at=now_ms() - 45_000, lifetime_ms=30_000)

    outcome = await gateway_site.cloud.outcome(command)

    assert outcome.data == {"command": command, "status": "rejected", "reason": "expired"}
    assert gateway_site.doors["door-1"].strike_pulses == 0


async def test_unknown_door_and_old_seq_are_rejected_by_id(gateway_site: GatewaySite) -> None:
    ok = await gateway_site.unlock(seq=10)
    await gateway_site.cloud.outcome(ok)
    unknown = await gateway_site.unlock("door-404", seq=11)
    stale = await gateway_site.unlock(seq=9)

    assert (await gateway_site.cloud.outcome(unknown)).data == {
        "command": unknown,
        "status": "rejected",
        "reason": "unknown_target",
    }
    assert (await gateway_site.cloud.outcome(stale)).data == {
        "command": stale,
        "status": "rejected",
        "reason": "out_of_sequence",
    }
    assert gateway_site.doors["door-1"].strike_pulses == 1


async def test_forged_and_misaddressed_commands_raise_alarms(gateway_site: GatewaySite) -> None:
    forger = CommandSigner(SigningKey.generate(), gateway_site.settings.id)
    forged_id, forged = forger.unlock("door-1")
    tampered = gateway_site.signer.sign(gateway_site.signer.body("door-1")).replace(
        b"resident:7", b"resident:8"
    )
    elsewhere_id, elsewhere = gateway_site.signer.unlock("door-1", gateway="gw-elsewhere")

    for payload in (forged, tampered, elsewhere, b"\xff not even json"):
        await gateway_site.cloud.send(payload)

    await gateway_site.cloud.wait_for(lambda c: len(c.find("gateway.alarm")) == 4)
    alarms = [e.data for e in gateway_site.cloud.find("gateway.alarm")]
    assert alarms == [
        {"kind": "bad_command", "reason": "unknown_key"},
        {"kind": "bad_command", "reason": "bad_signature"},
        {"kind": "bad_command", "reason": "wrong_gateway", "command": elsewhere_id},
        {"kind": "bad_command", "reason": "malformed"},
    ]
    # A forger's claimed id is never reported as a status of that id.
    assert not gateway_site.cloud.find("command.status", command=forged_id)
    assert gateway_site.doors["door-1"].strike_pulses == 0


async def test_the_pulse_sent_to_the_controller_is_bounded(
    gateway_site: GatewaySite, broker: BrokerInfo
) -> None:
    sim = gateway_site.doors["door-1"]
    watcher, _ = await subscribed_link(broker.host, broker.port, broker.protocol, [sim.topics.cmd])
    try:
        asked = await gateway_site.unlock(args={"pulse_ms": 120})
        defaulted = await gateway_site.unlock()
        clamped = await gateway_site.unlock(args={"pulse_ms": 600_000})
        async with asyncio.timeout(TIMEOUT):
            sent = [parse_command((await watcher.get()).payload) for _ in range(3)]
    finally:
        await watcher.stop()

    assert all(isinstance(c, PulseCommand) for c in sent)
    assert {c.id: (c.ms, c.relay) for c in sent if isinstance(c, PulseCommand)} == {
        asked: (120, 1),
        defaulted: (300, 1),  # the door's configured pulse
        clamped: (30_000, 1),  # the profile's ceiling: an unlock is always a bounded pulse
    }


def test_every_action_the_guard_lets_through_needs_a_handler(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Store(tmp_path / "gateway.db", "gw-wiring") as store:
        outbox = Outbox(store)
        commands = CommandLog(store, outbox, now_ms, GatewayMetrics())
        guard = ReplayGuard(
            store, {key.kid: key.verify_key}, "gw-wiring", {"door.unlock": [], "meter.read": []}
        )

        async def unlock(body: CommandBody) -> CommandStatus:
            return CommandStatus.FAILED

        def receiver(handlers: dict[str, CommandHandler]) -> CommandReceiver:
            return CommandReceiver(
                cast(MqttLink, None),
                store,
                outbox,
                guard,
                commands,
                handlers,
                now_ms,
                GatewayMetrics(),
                lambda name, coro: coro.close(),
            )

        with pytest.raises(ValueError, match="without a handler"):
            receiver({"door.unlock": unlock})
        with pytest.raises(ValueError, match="no such command actions"):
            receiver({"door.unlock": unlock, "meter.read": unlock, "door.hold_open": unlock})
        receiver({"door.unlock": unlock, "meter.read": unlock})
