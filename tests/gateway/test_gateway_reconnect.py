"""A broker restart: the gateway's links come back by themselves and nothing unacked is lost."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway import Gateway, GatewaySettings
from tests.gateway.harness import TIMEOUT, FakeCloud, RestartableMosquitto, make_settings


async def test_links_recover_after_a_broker_restart_and_unacked_events_are_resent(
    mosquitto: RestartableMosquitto,
    tmp_path: Path,
    cloud_key_file: Path,
    start_gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    settings: GatewaySettings = make_settings(
        host="127.0.0.1",
        port=mosquitto.port,
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

        # The broker dies with the batch delivered but never acknowledged by the cloud.
        mosquitto.kill()
        mosquitto.start()

        # Everything reconnects on its own, and the gateway sends the unacked event again.
        await cloud.wait_for(
            lambda c: sum(started in b.events for b in c.batches) >= 2, within=3 * TIMEOUT
        )
        assert gw.outbox.depth == 1  # still there: only the cloud's ack may remove it
        metrics = gw.metrics.render().decode()
        assert 'courtyard_gateway_link_reconnects_total{link="cloud"} 1.0' in metrics
        await cloud.ack([started.seq])
        await cloud.wait_for(lambda c: c.statuses.count(b'{"online":true,"v":1}') >= 2)
    finally:
        await cloud.stop()
