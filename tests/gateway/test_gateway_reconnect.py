"""A broker restart: the gateway's links come back by themselves and nothing unacked is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway import Gateway, GatewaySettings
from tests.gateway.harness import TIMEOUT, FakeCloud, RestartableMosquitto, make_settings


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class Gate:
    """A TCP relay to the broker, for the gateway's links, that the test opens and shuts.

    Shut, nothing listens on :attr:`port`: the gateway's connection attempts are refused, exactly
    as while the broker is down, and its relayed connections are closed. Open, it relays.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0  # chosen at the first open, kept afterwards
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[object]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        relays = list(self._relays)
        for relay in relays:
            relay.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            await self._connect(reader, writer)
        finally:
            await _close(writer)
            self._relays.discard(task)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            return  # the broker is down: the client sees its connection closed
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        try:
            # Either side closing ends the relayed connection, as it would end a direct one.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            await _close(up_writer)


@pytest.fixture
async def gate(mosquitto: RestartableMosquitto) -> AsyncIterator[Gate]:
    """An open gate to the test's broker (shut after the gateways have stopped)."""
    gate = Gate(mosquitto.port)
    await gate.open()
    yield gate
    await gate.shut()


async def test_links_recover_after_a_broker_restart_and_unacked_events_are_resent(
    mosquitto: RestartableMosquitto,
    gate: Gate,
    tmp_path: Path,
    cloud_key_file: Path,
    start_gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    # The gateway reaches the broker through the gate; the cloud connects directly.
    settings: GatewaySettings = make_settings(
        host="127.0.0.1",
        port=gate.port,
        protocol="5",
        data_dir=tmp_path / "gw",
        key_files=[cloud_key_file],
        # A retry timer far beyond the test: a second delivery can only come from the resend
        # that follows a reconnect.
        uplink={"ack_timeout_ms": 600_000},
    )
    cloud = FakeCloud("127.0.0.1", mosquitto.port, "5", Gateway(settings).topics, auto_ack=False)
    await cloud.start()
    try:
        gw = await start_gateway(settings)
        started = await cloud.wait_event("gateway.started")
        assert gw.outbox.depth == 1

        # The broker dies with the batch delivered but never acknowledged by the cloud, and comes
        # back empty (no persistence): no session, no subscription. The cloud must be listening
        # again before the gateway reconnects: a resend published to no subscriber is dropped by
        # the broker, and the next one would come only after the (600 s) ack timeout. Left to
        # their back-off and jitter, the gateway sometimes won that race (under load).
        await cloud.stop()
        mosquitto.kill()
        await gate.shut()
        mosquitto.start()
        await cloud.start()  # returns once its subscriptions are proven in force

        # The gateway reconnects on its own, and sends the unacked event again.
        await gate.open()
        await cloud.wait_for(
            lambda c: sum(started in b.events for b in c.batches) >= 2, within=3 * TIMEOUT
        )
        assert gw.outbox.depth == 1  # still there: only the cloud's ack may remove it
        metrics = gw.metrics.render().decode()
        assert 'courtyard_gateway_link_reconnects_total{link="cloud"} 1.0' in metrics
        await cloud.ack([started.seq])
        await cloud.wait_for(lambda c: c.statuses.count(b'{"online":true,"v":1}') >= 2)
        await asyncio.wait_for(gw.ready.wait(), TIMEOUT)
    finally:
        await cloud.stop()
