"""Story 1, remote unlock, end to end: API → cloud → real broker → gateway → door controller."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from cloud_sync.protocol import CommandBody, GatewayTopics, sign_command
from cloud_sync.service.keys import CloudKeys
from courtyard.community import Community
from devices.door import Behaviour, StrikeState
from tests.e2e.conftest import Api, Observer


def _topics(c: Community) -> GatewayTopics:
    return GatewayTopics(c.gateway_id, c.topic_root)


async def _li(api: Api, c: Community) -> str:
    li = c.account("li")
    return await api.login(li.login, li.password)


async def test_opened_only_after_the_door_sensor_reports_it(
    community: Community, api: Api, observer: Observer
) -> None:
    token = await _li(api, community)
    door = await api.door_id(token, "Building 1 main gate")
    sim = community.simulators["b1-gate"]
    before = sim.strike_pulses
    result = await api.unlock_and_wait(token, door)
    assert result["status"] == "opened"
    assert sim.strike_pulses == before + 1
    # The gateway reported "opened" only after the controller's door_opened event for this command:
    # both travel through the gateway's outbox, so their sequence numbers give the order.
    root = _topics(community).base
    cmd = result["command_id"]
    opened = await observer.wait_event(
        root, lambda e: e["type"] == "command.status" and e["data"].get("status") == "opened"
    )
    sensed = await observer.wait_event(
        root,
        lambda e: (
            e["type"] == "door.event"
            and e["data"].get("kind") == "door_opened"
            and e["data"].get("command") == cmd
        ),
    )
    assert opened["data"]["command"] == cmd
    assert sensed["seq"] < opened["seq"]


async def test_released_not_opened_when_nobody_opens(
    community: Community, api: Api, observer: Observer
) -> None:
    community.simulators["b1-gate"].set_behaviour(Behaviour.NOBODY_OPENS)
    token = await _li(api, community)
    door = await api.door_id(token, "Building 1 main gate")
    result = await api.unlock_and_wait(token, door)
    assert result["status"] == "released_not_opened"
    assert community.simulators["b1-gate"].strike_pulses == 1
    assert community.simulators["b1-gate"].snapshot().door == "closed"


async def test_strike_fault_is_a_clear_failure(community: Community, api: Api) -> None:
    community.simulators["b1-gate"].set_behaviour(Behaviour.STRIKE_FAILS)
    token = await _li(api, community)
    door = await api.door_id(token, "Building 1 main gate")
    result = await api.unlock_and_wait(token, door)
    assert result["status"] == "failed"
    assert community.simulators["b1-gate"].strike_pulses == 0


async def test_other_buildings_door_is_404_and_nothing_reaches_the_broker(
    community: Community, api: Api, observer: Observer
) -> None:
    token = await _li(api, community)
    admin = community.account("admin")
    admin_token = await api.login(admin.login, admin.password)
    status, body = await api.call("GET", "/api/v1/doors", admin_token)
    b2 = next(d["id"] for d in body["doors"] if d["name"] == "Building 2 main gate")
    status, body = await api.call("POST", f"/api/v1/doors/{b2}/unlock", token, json={})
    assert status == 404
    assert body["error"]["code"] == "not_found"
    status, missing = await api.call("POST", "/api/v1/doors/999999/unlock", token, json={})
    assert (status, missing) == (404, body)  # forbidden and missing look the same
    # Positive control: an allowed unlock right after. Messages from one publisher arrive in
    # order, so once the observer sees this command, it would have seen any earlier one.
    own = await api.door_id(token, "Building 1 main gate")
    status, ok = await api.call("POST", f"/api/v1/doors/{own}/unlock", token, json={})
    assert status == 202
    cmd_topic = _topics(community).down_cmd
    await observer.wait_for(
        lambda m: m.topic == cmd_topic and ok["command_id"].encode() in m.payload, 10
    )
    # The shared test broker carries other tests' traffic: count this community's commands, and
    # look everywhere for anything naming the forbidden door as a target.
    ours = [m for m in observer.seen if m.topic.startswith(f"{community.topic_root}/")]
    commands = [m for m in ours if m.topic.endswith("/down/cmd")]
    assert len(commands) == 1
    assert not [m for m in observer.seen if b'\\"target\\":\\"b2-gate' in m.payload]
    assert not [
        m for m in observer.seen if m.topic == f"{community.site_prefix}/door/ctrl-b2-gate/cmd"
    ]
    assert community.simulators["b2-gate"].strike_pulses == 0


def _captured_command(observer: Observer, c: Community, command_id: str) -> bytes:
    topic = _topics(c).down_cmd
    return next(
        m.payload for m in observer.seen if m.topic == topic and command_id.encode() in m.payload
    )


def _forge(c: Community, **over: Any) -> tuple[str, bytes]:
    key = CloudKeys.load_or_create(c.key_dir).signing
    now = over.pop("now")
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "gateway": c.gateway_id,
        "target": "b1-gate",
        "action": "door.unlock",
        "seq": 10_000,
        "issued_at": now,
        "expires_at": now + 20_000,
        "kid": key.kid,
        "actor": "account:1",
        "args": {"pulse_ms": 600},
    }
    fields.update(over)
    body = CommandBody(**fields)
    return body.id, sign_command(key, body)


def _refusals(observer: Observer, c: Community) -> list[tuple[str | None, str]]:
    """(command id or None, reason) of every refusal the gateway reported, in order.

    A refusal of an authentic command the gateway holds no status for is a ``command.status``
    ``rejected``; anything else (forgeries, replays of finished commands) is a ``gateway.alarm``.
    """
    out: list[tuple[str | None, str]] = []
    for e in observer.events(_topics(c).base):
        d = e["data"]
        if e["type"] == "command.status" and d.get("status") == "rejected":
            out.append((d["command"], d["reason"]))
        elif e["type"] == "gateway.alarm" and d.get("kind") == "bad_command":
            out.append((d.get("command"), d["reason"]))
    return out


async def _inject_and_refusal(
    observer: Observer, c: Community, payload: bytes
) -> tuple[str | None, str]:
    """Publish ``payload`` on the gateway's command topic; the refusal it reports."""
    before = len(_refusals(observer, c))
    await observer.link.publish(_topics(c).down_cmd, payload)
    await observer.wait_for(lambda m: len(_refusals(observer, c)) > before, 10)
    return _refusals(observer, c)[before]


async def test_bad_commands_are_refused_and_the_strike_never_moves(
    community: Community, api: Api, observer: Observer
) -> None:
    token = await _li(api, community)
    door = await api.door_id(token, "Building 1 main gate")
    sim = community.simulators["b1-gate"]
    good = await api.unlock_and_wait(token, door)
    assert good["status"] == "opened"
    assert sim.strike_pulses == 1
    captured = _captured_command(observer, community, good["command_id"])
    now = json.loads(json.loads(captured)["b"])["iat"]
    good_id = good["command_id"]

    # replayed: the exact bytes of the command that already opened the door
    assert await _inject_and_refusal(observer, community, captured) == (good_id, "replayed")
    # tampered: another id under the original signature
    outer = json.loads(captured)
    body = json.loads(outer["b"])
    body["id"] = uuid.uuid4().hex
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    tampered = json.dumps({"b": text, "s": outer["s"]}).encode()
    assert await _inject_and_refusal(observer, community, tampered) == (None, "bad_signature")
    # expired, wrong gateway, out of sequence (a fresh id with a sequence already used)
    cases = {
        "expired": _forge(community, now=now - 40_000, expires_at=now - 20_000),
        "wrong_gateway": _forge(community, now=now, gateway="gw-elsewhere"),
        "out_of_sequence": _forge(community, now=now, seq=1),
    }
    for reason, (cid, payload) in cases.items():
        got_id, got_reason = await _inject_and_refusal(observer, community, payload)
        assert got_reason == reason
        assert got_id in (cid, None)
    assert sim.strike_pulses == 1

    # The same after a restart: replay state is durable.
    await community.restart_gateway()
    assert community.gateway is not None
    await community.gateway.ready.wait()
    assert await _inject_and_refusal(observer, community, captured) == (good_id, "replayed")
    cid, stale_seq = _forge(community, now=now, seq=1)
    assert (await _inject_and_refusal(observer, community, stale_seq))[1] == "out_of_sequence"
    assert sim.strike_pulses == 1
    # and the legitimate path still works after the restart. The first unlock's 600 ms pulse may
    # still be running on a fast machine, and a pulse during a pulse only extends it (the strike
    # does not move, so it is not counted): wait for the strike to lock first.
    await asyncio.to_thread(sim.wait_for, lambda s: s.strike is StrikeState.LOCKED, 10)
    after = await api.unlock_and_wait(token, door)
    assert after["status"] == "opened"
    assert sim.strike_pulses == 2


async def test_command_delivered_after_its_expiry_is_never_executed(
    broker: Any, database_url: str, tmp_path: Any
) -> None:
    import aiohttp

    c = Community(
        tmp_path / "c",
        broker_host=broker.host,
        broker_port=broker.port,
        broker_protocol=broker.protocol,
        database_url=database_url,
        fast_passwords=True,
        isolate_topics=True,
        gateway_id=f"gw-{uuid.uuid4().hex[:8]}",
        command_ttl_ms=1_000,
        pulse_ms=600,
    )
    await c.start()
    observer = Observer(broker)
    try:
        assert c.gateway is not None
        await c.gateway.ready.wait()
        await observer.start(c.topic_root)
        async with aiohttp.ClientSession() as http:
            api = Api(c.url, http)
            token = await _li(api, c)
            door = await api.door_id(token, "Building 1 main gate")
            await c.gateway.stop()  # the site's link is down
            status, body = await api.call("POST", f"/api/v1/doors/{door}/unlock", token, json={})
            assert status == 202
            cmd = body["command_id"]
            outcome = await api.wait_terminal(token, cmd, wait=15)
            assert outcome["status"] == "expired"
            captured = _captured_command(observer, c, cmd)
            # The link returns: the broker may deliver its queued copy; we deliver one too.
            c.gateway = None
            await c.restart_gateway()
            assert c.gateway is not None
            await c.gateway.ready.wait()
            assert await _inject_and_refusal(observer, c, captured) == (cmd, "expired")
            assert c.simulators["b1-gate"].strike_pulses == 0
            final = await api.wait_terminal(token, cmd, wait=1)
            assert final["status"] == "expired"
    finally:
        await observer.stop()
        await c.stop()
