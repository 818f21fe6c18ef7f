"""Dispatch order, the broker being away, and the expiry sweeper.

The API tests go through ``POST …/unlock``; the ones below them drive :meth:`Dispatcher.submit`
directly, for any action, with a stand-in for the MQTT link that can hold a publish, refuse it, or
let a gateway report overtake it; the last one sends a ``meter.read`` to a real gateway.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from cloud_sync.protocol import (
    CommandBody,
    CommandStatus,
    LinkError,
    MqttLink,
    SyncProtocolError,
    verify_command,
)
from cloud_sync.service.db import Database
from cloud_sync.service.dispatch import Dispatcher
from cloud_sync.service.keys import SIGNING_KEY_FILE, CloudKeys
from cloud_sync.service.state import DISPATCHER, SWEEPER
from cloud_sync.service.tables import AuditRecord, Command, Gateway
from cloud_sync.service.transitions import move
from cloud_sync.service.waiters import CommandWaiters
from courtyard.embedded_broker import free_port
from gateway import Gateway as SiteGateway
from tests.cloud.conftest import FakeClock, Seeded
from tests.gateway.bus_sim import bus_settings, make_meters, meter_settings, serve
from tests.gateway.harness import make_settings

_S = CommandStatus


async def _unlock(client: TestClient, door: int, headers: dict[str, str], **kw: Any) -> Any:
    return await client.post(f"/api/v1/doors/{door}/unlock", headers=headers, **kw)


async def test_concurrent_unlocks_reach_the_gateway_in_sequence_order(
    api: TestClient, login: Any, seeded: Any, fake_gateway: Any
) -> None:
    li = await login(api, "li")
    engineer = await login(api, "engineer")
    reason = {"reason": "load test of the strike"}
    requests = [_unlock(api, seeded.door_b1_id, li) for _ in range(8)] + [
        _unlock(api, seeded.door_b2_id, engineer, json=reason) for _ in range(8)
    ]
    responses = await asyncio.gather(*requests)
    assert all(r.status == 202 for r in responses)
    assert {(await r.json())["status"] for r in responses} == {"sent"}
    seqs = [(await fake_gateway.command()).seq for _ in range(16)]
    assert seqs == list(range(1, 17))


async def test_broker_away_answers_queued_and_the_sweeper_expires_it(
    make_api: Any, seeded: Any, login: Any, db: Any
) -> None:
    client: TestClient = await make_api(
        wait_for_broker=False, broker={"port": free_port()}, publish_timeout_ms=50
    )
    li = await login(client, "li")
    resp = await _unlock(client, seeded.door_b1_id, li)
    assert resp.status == 202
    accepted = await resp.json()
    assert accepted["status"] == "queued"
    cid = accepted["command_id"]
    poll = asyncio.create_task(client.get(f"/api/v1/commands/{cid}?wait=20", headers=li))
    async with db.session() as s:
        command = await s.get(Command, cid)
        assert command is not None
    later = command.expires_at + 2_001
    assert await client.app[SWEEPER].sweep_once(later) == [cid]
    view = await (await asyncio.wait_for(poll, 10)).json()
    assert view["status"] == "expired"  # the long poll woke on the sweep
    async with db.session() as s:
        actions = (
            await s.execute(
                select(AuditRecord.action, AuditRecord.object).order_by(AuditRecord.seq)
            )
        ).all()
    assert ("command.expired", f"command:{cid}") in [tuple(a) for a in actions]


async def test_sweeper_leaves_fresh_commands_and_fails_silent_acknowledged_ones(
    make_api: Any, seeded: Any, login: Any, fake_gateway: Any, db: Any
) -> None:
    client: TestClient = await make_api(sweep_interval_s=60)
    li = await login(client, "li")
    cid = (await (await _unlock(client, seeded.door_b1_id, li)).json())["command_id"]
    await fake_gateway.send(
        fake_gateway.event("command.status", {"command": cid, "status": "acknowledged"})
    )
    async with db.session() as s:
        command = await s.get(Command, cid)
        assert command is not None
        assert command.status == "acknowledged"
    sweeper = client.app[SWEEPER]
    assert await sweeper.sweep_once(command.expires_at + 10_000) == []  # acknowledged: wait
    assert await sweeper.sweep_once(command.expires_at + 60_001) == [cid]
    view = await (await client.get(f"/api/v1/commands/{cid}", headers=li)).json()
    assert (view["status"], view["reason"]) == ("failed", "no_outcome")
    # a late outcome changes nothing, and is still acknowledged (and stored)
    await fake_gateway.send(
        fake_gateway.event("command.status", {"command": cid, "status": "opened"})
    )
    view = await (await client.get(f"/api/v1/commands/{cid}", headers=li)).json()
    assert view["status"] == "failed"


# -- Dispatcher.submit, directly -----------------------------------------------------------------

Hook = Callable[[CommandBody], Awaitable[None]]


class _Link:
    """Stands in for the cloud's MQTT link: records each command it is asked to publish.

    ``before_puback`` runs before the publish returns (as a gateway report racing the broker's
    PUBACK would); ``refuse`` makes every publish fail as a link that is down does.
    """

    def __init__(
        self,
        keys: CloudKeys,
        gateway: str,
        *,
        before_puback: Hook | None = None,
        refuse: bool = False,
    ) -> None:
        self._keys = {keys.signing.kid: keys.signing.verify_key}
        self._gateway = gateway
        self._before_puback = before_puback
        self._refuse = refuse
        self.published: list[CommandBody] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if self._refuse:
            raise LinkError("not connected")
        body = verify_command(payload, self._keys, self._gateway, _now())
        assert topic.endswith(f"/gw/{self._gateway}/down/cmd")
        # Give every other task a turn before the "PUBACK": an unordered publisher would show it.
        for _ in range(3):
            await asyncio.sleep(0)
        if self._before_puback is not None:
            await self._before_puback(body)
        self.published.append(body)


def _now() -> int:
    return time.time_ns() // 1_000_000


def _dispatcher(db: Database, keys: CloudKeys, link: _Link, clock: FakeClock) -> Dispatcher:
    return Dispatcher(
        db,
        keys,
        cast(MqttLink, link),
        clock,
        CommandWaiters(),
        topic_root="t-dispatch",
        publish_timeout_ms=2_000,
    )


def _command(
    seeded: Seeded,
    clock: FakeClock,
    *,
    action: str = "door.unlock",
    target: str = "b1-main",
    ttl_ms: int = 30_000,
    issued_ago_ms: int = 0,
) -> Command:
    issued = clock.now_ms() - issued_ago_ms
    return Command(
        id=uuid.uuid4().hex,
        site_id=seeded.site_id,
        gateway_id=seeded.gateway_id,
        target=target,
        door_id=seeded.door_b1_id if action == "door.unlock" else None,
        account_id=seeded.logins["li"].account_id,
        action=action,
        status=_S.QUEUED.value,
        issued_at=issued,
        expires_at=issued + ttl_ms,
        updated_at=issued,
    )


def _record(command: Command) -> Callable[[AsyncConnection], Awaitable[None]]:
    """What a service's ``record`` does, minus the audit record: insert the numbered row."""

    async def record(conn: AsyncConnection) -> None:
        await conn.execute(insert(Command).values(**command.model_dump()))

    return record


async def _submit(
    dispatcher: Dispatcher, command: Command, args: Mapping[str, int | str] | None = None
) -> CommandStatus:
    return await dispatcher.submit(command, args or {}, _record(command))


async def _row(db: Database, command_id: str) -> tuple[str, int | None, str | None]:
    async with db.session() as s:
        row = await s.get(Command, command_id)
    assert row is not None
    return row.status, row.seq, row.reason


async def _gateway_seq(db: Database, gateway_id: str, value: int | None = None) -> int:
    async with db.session() as s:
        if value is not None:
            gateway = update(Gateway).where(col(Gateway.id) == gateway_id)
            await s.execute(gateway.values(command_seq=value))
            await s.commit()
        gw = await s.get(Gateway, gateway_id)
    assert gw is not None
    return gw.command_seq


async def test_concurrent_commands_for_one_gateway_publish_in_seq_order(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded, fake_clock: FakeClock
) -> None:
    await _gateway_seq(db, seeded.gateway_id, 40)
    link = _Link(cloud_keys, seeded.gateway_id)
    dispatcher = _dispatcher(db, cloud_keys, link, fake_clock)
    unlock = _command(seeded, fake_clock)
    read = _command(seeded, fake_clock, action="meter.read", target="m1")

    statuses = await asyncio.gather(
        _submit(dispatcher, unlock, {"pulse_ms": 3000}), _submit(dispatcher, read)
    )

    assert list(statuses) == [_S.SENT, _S.SENT]
    assert [(b.id, b.seq) for b in link.published] == [(unlock.id, 41), (read.id, 42)]
    assert await _row(db, unlock.id) == ("sent", 41, None)
    assert await _row(db, read.id) == ("sent", 42, None)


async def test_the_signed_body_names_the_commands_target_and_carries_its_args(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded, fake_clock: FakeClock
) -> None:
    link = _Link(cloud_keys, seeded.gateway_id)
    dispatcher = _dispatcher(db, cloud_keys, link, fake_clock)
    unlock = _command(seeded, fake_clock)
    read = _command(seeded, fake_clock, action="meter.read", target="m7")

    await _submit(dispatcher, unlock, {"pulse_ms": 1234})
    await _submit(dispatcher, read)

    first, second = link.published
    assert (first.action, first.target, dict(first.args)) == (
        "door.unlock",
        "b1-main",
        {"pulse_ms": 1234},
    )
    assert (second.action, second.target, dict(second.args)) == ("meter.read", "m7", {})
    assert second.actor == f"account:{seeded.logins['li'].account_id}"
    assert (second.issued_at, second.expires_at) == (read.issued_at, read.expires_at)


async def test_many_concurrent_commands_publish_in_seq_order(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded, fake_clock: FakeClock
) -> None:
    link = _Link(cloud_keys, seeded.gateway_id)
    dispatcher = _dispatcher(db, cloud_keys, link, fake_clock)
    commands = [_command(seeded, fake_clock, action="meter.read", target="m1") for _ in range(8)]

    await asyncio.gather(*(_submit(dispatcher, c) for c in commands))

    assert [b.seq for b in link.published] == list(range(1, 9))


async def test_a_command_past_its_expiry_is_expired_and_never_published(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded, fake_clock: FakeClock
) -> None:
    link = _Link(cloud_keys, seeded.gateway_id)
    dispatcher = _dispatcher(db, cloud_keys, link, fake_clock)
    stale = _command(seeded, fake_clock, issued_ago_ms=60_000)

    assert await _submit(dispatcher, stale, {"pulse_ms": 3000}) is _S.EXPIRED

    assert link.published == []
    status, seq, reason = await _row(db, stale.id)
    assert (status, reason) == ("expired", "expired_before_dispatch")
    assert seq == 1  # numbered, committed, never published: a harmless gap at the gateway
    fresh = _command(seeded, fake_clock)
    assert await _submit(dispatcher, fresh, {"pulse_ms": 3000}) is _S.SENT
    assert [b.id for b in link.published] == [fresh.id]
    assert dispatcher.published == 1


async def test_a_broker_not_confirming_leaves_the_command_queued(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded, fake_clock: FakeClock
) -> None:
    link = _Link(cloud_keys, seeded.gateway_id, refuse=True)
    dispatcher = _dispatcher(db, cloud_keys, link, fake_clock)
    read = _command(seeded, fake_clock, action="meter.read", target="m1")

    assert await _submit(dispatcher, read) is _S.QUEUED

    assert await _row(db, read.id) == ("queued", 1, None)  # the sweeper will expire it
    assert dispatcher.published == 0


async def test_a_report_overtaking_sent_wins(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded, fake_clock: FakeClock
) -> None:
    async def gateway_reports_first(body: CommandBody) -> None:
        # Ingest commits the gateway's whole report before the dispatcher hears the PUBACK.
        async with db.begin() as conn:
            await move(
                conn,
                body.id,
                [(_S.ACKNOWLEDGED, None), (_S.COMPLETED, None)],
                now_ms=fake_clock.now_ms(),
                actor=f"gateway:{seeded.gateway_id}",
                reported_by_gateway=True,
                gateway_id=seeded.gateway_id,
            )

    link = _Link(cloud_keys, seeded.gateway_id, before_puback=gateway_reports_first)
    dispatcher = _dispatcher(db, cloud_keys, link, fake_clock)
    read = _command(seeded, fake_clock, action="meter.read", target="m1")

    assert await _submit(dispatcher, read) is _S.COMPLETED

    assert await _row(db, read.id) == ("completed", 1, None)  # "sent" did not move it back
    async with db.session() as s:
        of_read = col(AuditRecord.object) == f"command:{read.id}"
        audited = (await s.execute(select(col(AuditRecord.action)).where(of_read))).scalars().all()
    assert audited == ["command.completed"]


async def test_a_command_that_cannot_be_signed_is_refused_before_it_is_stored(
    db: Database, cloud_keys: CloudKeys, seeded: Seeded, fake_clock: FakeClock
) -> None:
    link = _Link(cloud_keys, seeded.gateway_id)
    dispatcher = _dispatcher(db, cloud_keys, link, fake_clock)

    with pytest.raises(ValueError, match="no such command action"):
        await _submit(dispatcher, _command(seeded, fake_clock, action="door.hold_open"))
    with pytest.raises(SyncProtocolError):
        await _submit(dispatcher, _command(seeded, fake_clock), {f"a{i}": i for i in range(17)})
    with pytest.raises(SyncProtocolError):
        await _submit(dispatcher, _command(seeded, fake_clock, target="not a target"))

    async with db.session() as s:
        assert (await s.execute(select(col(Command.id)))).all() == []
    assert await _gateway_seq(db, seeded.gateway_id) == 0
    assert link.published == []


# -- cloud to gateway ------------------------------------------------------------------------------


async def test_a_meter_read_submitted_in_the_cloud_completes_at_a_real_gateway(
    api: TestClient,
    login: Any,
    seeded: Seeded,
    broker: Any,
    topic_root: str,
    tmp_path: Path,
) -> None:
    li = await login(api, "li")
    dispatcher = api.app[DISPATCHER]
    with serve(make_meters(1)) as server:
        settings = make_settings(
            host=broker.host,
            port=broker.port,
            protocol=broker.protocol,
            data_dir=tmp_path / "gw-data",
            key_files=[tmp_path / "cloud-keys" / f"{SIGNING_KEY_FILE}.pub"],
            gateway_id=seeded.gateway_id,
            topic_root=topic_root,
            buses=[bus_settings(server.url)],
            meters=meter_settings(1, interval_s=86_400),
        )
        async with SiteGateway(settings) as gw:
            await asyncio.wait_for(gw.ready.wait(), 10)
            recorded: list[tuple[str, dict[str, Any]]] = []
            gw.outbox.add_listener(lambda e: recorded.append((e.type, e.data)))
            read = _command(seeded, FakeClock(), action="meter.read", target="m1")

            assert await _submit(dispatcher, read) is _S.SENT

            resp = await api.get(f"/api/v1/commands/{read.id}?wait=10", headers=li)
            view = await resp.json()
            assert view["status"] == "completed", view
            ours = [
                (kind, data.get("status") or data.get("meter"))
                for kind, data in recorded
                if data.get("command") == read.id or kind == "meter.reading"
            ]
            assert ours == [
                ("command.status", "acknowledged"),
                ("meter.reading", "m1"),
                ("command.status", "completed"),
            ]
