"""End-to-end fixtures: a whole community (cloud, gateway, simulated doors) on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_sync.protocol import EventBatch, Message, MqttLink
from courtyard.community import Community


class Observer:
    """An independent MQTT client subscribed to ``#``: what really crossed the broker."""

    def __init__(self, broker: Any) -> None:
        self.link = MqttLink(
            broker.host, broker.port, f"observer-{uuid.uuid4().hex[:8]}", protocol=broker.protocol
        )
        self.seen: list[Message] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self, root: str) -> None:
        await self.link.start()
        await self.link.wait_connected(10)
        self.link.subscribe("#", qos=1)
        self._task = asyncio.create_task(self._collect())
        # Prove the subscription is live before the test relies on it.
        probe = f"{root}/observer-probe/{uuid.uuid4().hex}"
        while True:
            await self.link.publish(probe, b"probe")
            try:
                await self.wait_for(lambda m: m.topic == probe, 0.5)
                return
            except TimeoutError:
                continue

    async def _collect(self) -> None:
        async for message in self.link.messages():
            async with self._changed:
                self.seen.append(message)
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[Message], bool], within: float) -> Message:
        """The first message (already seen or still to come) that satisfies ``predicate``."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for m in self.seen:
                    if predicate(m):
                        return m
                await self._changed.wait()

    def events(self, gateway_root: str) -> list[dict[str, Any]]:
        """Every event the gateway sent up so far, once each (resent batches repeat events)."""
        out: dict[str, dict[str, Any]] = {}
        for m in self.seen:
            if m.topic.startswith(gateway_root) and m.topic.endswith("/up/events"):
                for e in EventBatch.decode(m.payload).events:
                    out.setdefault(e.id, e.to_obj())
        return sorted(out.values(), key=lambda e: e["seq"])

    async def wait_event(
        self, gateway_root: str, predicate: Callable[[dict[str, Any]], bool], within: float = 10
    ) -> dict[str, Any]:
        """The first event sent up by the gateway that satisfies ``predicate``."""

        def match(m: Message) -> bool:
            if not (m.topic.startswith(gateway_root) and m.topic.endswith("/up/events")):
                return False
            return any(predicate(e.to_obj()) for e in EventBatch.decode(m.payload).events)

        await self.wait_for(match, within)
        return next(e for e in self.events(gateway_root) if predicate(e))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.link.stop()


class Api:
    """A thin HTTP client of the cloud API."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = session

    async def login(self, login: str, password: str) -> str:
        async with self.http.post(
            f"{self.base}/api/v1/sessions", json={"login": login, "password": password}
        ) as r:
            assert r.status == 201, await r.text()
            return str((await r.json())["token"])

    async def call(
        self, method: str, path: str, token: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, f"{self.base}{path}", headers=headers, **kw) as r:
            body = await r.read()
            return r.status, (json.loads(body) if body else None)

    async def door_id(self, token: str, local_name: str) -> int:
        status, body = await self.call("GET", "/api/v1/doors", token)
        assert status == 200
        return int(next(d["id"] for d in body["doors"] if d["name"] == local_name))

    async def unlock_and_wait(self, token: str, door: int, wait: float = 10) -> dict[str, Any]:
        status, body = await self.call("POST", f"/api/v1/doors/{door}/unlock", token, json={})
        assert status == 202, body
        return await self.wait_terminal(token, body["command_id"], wait)

    async def wait_terminal(self, token: str, command_id: str, wait: float = 10) -> dict[str, Any]:
        terminal = {"opened", "released_not_opened", "rejected", "failed", "expired"}
        async with asyncio.timeout(wait + 5):
            while True:
                status, body = await self.call(
                    "GET", f"/api/v1/commands/{command_id}?wait={wait}", token
                )
                assert status == 200, body
                if body["status"] in terminal:
                    return dict(body)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "community(**options): keyword arguments for the e2e `community` fixture's Community,"
        " e.g. rs485=True (meter lines, the lock board and bank A's terminal)",
    )


@pytest.fixture
async def community(
    request: pytest.FixtureRequest, broker: Any, database_url: str, tmp_path: Path
) -> AsyncIterator[Community]:
    """A running community on the real broker and database, topics isolated per test.

    ``@pytest.mark.community(rs485=True, ...)`` passes options to :class:`Community`; its
    simulated devices (doors, and with ``rs485=True`` the locker terminal) are online when the
    test starts.
    """
    marker = request.node.get_closest_marker("community")
    options: dict[str, Any] = {"pulse_ms": 600, "walk_through_ms": 200}
    if marker is not None:
        options.update(marker.kwargs)
    c = Community(
        tmp_path / "community",
        broker_host=broker.host,
        broker_port=broker.port,
        broker_protocol=broker.protocol,
        database_url=database_url,
        fast_passwords=True,
        isolate_topics=True,
        gateway_id=f"gw-{uuid.uuid4().hex[:8]}",
        **options,
    )
    await c.start()
    assert c.gateway is not None
    await asyncio.wait_for(c.gateway.ready.wait(), 15)
    for sim in c.simulators.values():
        await asyncio.to_thread(sim.wait_for, lambda snap: snap.online, 10)
    for terminal in c.terminals.values():
        await asyncio.to_thread(terminal.wait_for, lambda snap: snap.online, 10)
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def observer(broker: Any, community: Community) -> AsyncIterator[Observer]:
    """An independent client on ``#`` for the community's broker."""
    o = Observer(broker)
    await o.start(community.topic_root)
    try:
        yield o
    finally:
        await o.stop()


@pytest.fixture
async def api(community: Community) -> AsyncIterator[Api]:
    """An HTTP client of the community's cloud."""
    async with aiohttp.ClientSession() as session:
        yield Api(community.url, session)
