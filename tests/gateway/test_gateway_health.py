"""The local health and metrics endpoints, over real HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from courtyard.embedded_broker import free_port
from gateway import Gateway, GatewaySettings
from tests.gateway.conftest import GatewaySite


async def get(port: int | None, path: str) -> tuple[int, str, str]:
    assert port is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


async def test_healthz_reports_ok_when_everything_runs(gateway_site: GatewaySite) -> None:
    port = gateway_site.gateway.http_port
    assert port is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        body = await response.json()
        status = response.status

    assert status == 200
    assert body["status"] == "ok"
    assert body["cloud_link"] == "up"
    assert body["site_link"] == "up"
    assert isinstance(body["outbox_pending"], int)
    assert body["doors"] == {"door-1": "online"}
    assert set(body["tasks"]) == {
        "uplink",
        "cloud-inbox",
        "site-inbox",
        "cloud-presence",
        "site-presence",
    }
    assert set(body["tasks"].values()) == {"running"}


async def test_healthz_is_degraded_without_a_site_broker(
    gateway_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    settings = gateway_settings()
    dead = settings.model_copy(
        update={"site": settings.site.model_copy(update={"port": free_port()})}
    )
    gw = await start_gateway(dead, wait_ready=False)

    status, content_type, text = await get(gw.http_port, "/healthz")

    assert status == 503
    assert content_type.startswith("application/json")
    assert '"status": "degraded"' in text
    assert '"site_link": "down"' in text
    assert not gw.ready.is_set()


async def test_metrics_count_commands_outcomes_and_events(gateway_site: GatewaySite) -> None:
    command = await gateway_site.unlock()
    await gateway_site.cloud.outcome(command)
    await gateway_site.unlock("door-404")
    await gateway_site.cloud.wait_event("command.status", reason="unknown_target")

    status, content_type, text = await get(gateway_site.gateway.http_port, "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    lines = set(text.splitlines())
    assert "courtyard_gateway_commands_accepted_total 1.0" in lines
    assert 'courtyard_gateway_commands_refused_total{reason="unknown_target"} 1.0' in lines
    assert 'courtyard_gateway_command_outcomes_total{status="opened"} 1.0' in lines
    assert 'courtyard_gateway_events_outboxed_total{type="gateway.started"} 1.0' in lines
    assert any(line.startswith("courtyard_gateway_outbox_depth ") for line in lines)
    assert 'courtyard_gateway_link_reconnects_total{link="cloud"} 0.0' in lines
    assert 'courtyard_gateway_task_restarts_total{task="uplink"} 0.0' in lines


async def test_two_gateways_in_one_process_keep_their_own_metrics(
    gateway_site: GatewaySite,
    gateway_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    other = await start_gateway(gateway_settings())
    command = await gateway_site.unlock()
    await gateway_site.cloud.outcome(command)

    _, _, mine = await get(gateway_site.gateway.http_port, "/metrics")
    _, _, theirs = await get(other.http_port, "/metrics")

    assert "courtyard_gateway_commands_accepted_total 1.0" in mine.splitlines()
    assert "courtyard_gateway_commands_accepted_total 0.0" in theirs.splitlines()
    assert other.http_port != gateway_site.gateway.http_port
