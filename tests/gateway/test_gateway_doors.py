"""The door driver against the real DoorSimulator on the real broker, through a whole gateway.

The simulator's strike-pulse counter is the ground truth: it proves whether the strike moved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cloud_sync.protocol import MqttLink
from devices.door import Behaviour, DoorEvent, EventType, encode
from gateway import DoorSettings, Gateway, GatewaySettings
from gateway.door_command import pulse_length
from tests.conftest import BrokerInfo
from tests.gateway.conftest import GatewaySite
from tests.gateway.harness import TIMEOUT, CommandSigner, FakeCloud, now_ms, unique
from trust import SigningKey


async def test_unlock_reports_opened_when_the_door_opens(gateway_site: GatewaySite) -> None:
    sim = gateway_site.doors["door-1"]
    command = await gateway_site.unlock()

    outcome = await gateway_site.cloud.outcome(command)

    assert outcome.data == {"command": command, "status": "opened"}
    statuses = [
        e.data["status"] for e in gateway_site.cloud.find("command.status", command=command)
    ]
    assert statuses in (["acknowledged", "opened"], ["opened"])
    opened = await gateway_site.cloud.wait_event("door.event", kind="door_opened", command=command)
    assert opened.data["door"] == "door-1"
    assert opened.data["boot"] == sim.boot
    assert sim.strike_pulses == 1


async def test_unlock_nobody_opens_reports_released_not_opened(gateway_site: GatewaySite) -> None:
    sim = gateway_site.doors["door-1"]
    sim.set_behaviour(Behaviour.NOBODY_OPENS)
    command = await gateway_site.unlock()

    outcome = await gateway_site.cloud.outcome(command)

    assert outcome.data == {"command": command, "status": "released_not_opened"}
    assert gateway_site.cloud.find("command.status", command=command, status="acknowledged")
    assert gateway_site.cloud.find("door.event", kind="strike_relocked", command=command)
    assert not gateway_site.cloud.find("door.event", kind="door_opened", command=command)
    assert sim.strike_pulses == 1


async def test_strike_fault_fails_and_the_strike_does_not_move(gateway_site: GatewaySite) -> None:
    sim = gateway_site.doors["door-1"]
    sim.set_behaviour(Behaviour.STRIKE_FAILS)
    command = await gateway_site.unlock()

    outcome = await gateway_site.cloud.outcome(command)

    assert outcome.data == {"command": command, "status": "failed", "reason": "strike_fault"}
    await gateway_site.cloud.wait_event("door.event", kind="strike_fault", command=command)
    assert sim.strike_pulses == 0


async def test_offline_controller_fails_without_a_pulse(gateway_site: GatewaySite) -> None:
    sim = gateway_site.doors["door-1"]
    sim.set_behaviour(Behaviour.OFFLINE)
    await gateway_site.cloud.wait_event("door.online", door="door-1", online=False)
    command = await gateway_site.unlock()

    outcome = await gateway_site.cloud.outcome(command)

    assert outcome.data == {"command": command, "status": "failed", "reason": "controller_offline"}
    # The controller comes back: it must not find a late pulse waiting for it.
    sim.set_behaviour(Behaviour.WALK_THROUGH)
    await asyncio.to_thread(sim.wait_for, lambda s: s.online, TIMEOUT)
    await gateway_site.cloud.wait_for(
        lambda c: len(c.find("door.online", door="door-1", online=True)) == 2
    )
    assert sim.strike_pulses == 0


async def test_silent_controller_times_out(
    gateway_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[..., Awaitable[Gateway]],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
    cloud_key: SigningKey,
) -> None:
    # Configured, never heard from (no retained state): the pulse goes out and nothing answers.
    door = DoorSettings(id="door-9", device=unique("dev"), ack_timeout_ms=200)
    settings = gateway_settings(doors=[door])
    cloud = await fake_cloud(settings)
    await start_gateway(settings)
    command_id, payload = CommandSigner(cloud_key, settings.id).unlock("door-9")

    await cloud.send(payload)
    outcome = await cloud.outcome(command_id)

    assert outcome.data == {
        "command": command_id,
        "status": "failed",
        "reason": "controller_timeout",
    }


async def test_controller_events_become_door_events(gateway_site: GatewaySite) -> None:
    sim = gateway_site.doors["door-1"]
    sim.force_open()
    forced = await gateway_site.cloud.wait_event("door.event", kind="forced_open")
    sim.close_door()
    closed = await gateway_site.cloud.wait_event("door.event", kind="door_closed")

    assert forced.data == {
        "door": "door-1",
        "kind": "forced_open",
        "device_seq": forced.data["device_seq"],
        "boot": sim.boot,
    }
    assert closed.data["device_seq"] == forced.data["device_seq"] + 1
    assert closed.seq > forced.seq


async def test_redelivered_and_malformed_site_messages_are_harmless(
    gateway_site: GatewaySite, broker: BrokerInfo
) -> None:
    sim = gateway_site.doors["door-1"]
    topics = sim.topics
    event = DoorEvent(boot=sim.boot, seq=1000, ts=now_ms(), type=EventType.HELD_OPEN)
    async with MqttLink(
        broker.host, broker.port, unique("intruder"), protocol=broker.protocol
    ) as link:  # type: ignore[arg-type]
        await link.wait_connected(TIMEOUT)
        await link.publish(topics.event, b"{not json", qos=1)
        await link.publish(topics.event, encode(event), qos=1)
        await link.publish(topics.event, encode(event), qos=1)  # a redelivery: same boot and seq
        await link.publish(topics.ack, b'{"v":1,"id":"x","ok":"yes"}', qos=1)

    held = await gateway_site.cloud.wait_event("door.event", kind="held_open")
    # The driver lives on: a real unlock still works after the garbage.
    command = await gateway_site.unlock()
    assert (await gateway_site.cloud.outcome(command)).data["status"] == "opened"

    assert held.data["device_seq"] == 1000
    assert len(gateway_site.cloud.find("door.event", kind="held_open")) == 1
    metrics = gateway_site.gateway.metrics.render().decode()
    assert 'courtyard_gateway_bad_messages_total{source="site"} 2.0' in metrics


def test_pulse_length_clamps_to_the_profile_and_refuses_non_integers() -> None:
    door = DoorSettings(id="d", device="dev", pulse_ms=3000)
    signer = CommandSigner(SigningKey.generate(), "gw")

    assert pulse_length(signer.body("d"), door) == 3000
    assert pulse_length(signer.body("d", args={"pulse_ms": 5}), door) == 100
    assert pulse_length(signer.body("d", args={"pulse_ms": 99_999}), door) == 30_000
    assert pulse_length(signer.body("d", args={"pulse_ms": 1500}), door) == 1500
    assert pulse_length(signer.body("d", args={"pulse_ms": "long"}), door) is None
