"""The daemon's life cycle: settings, start-up failures, clean stops."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pydantic
import pytest

from gateway import (
    ConfigError,
    DoorSettings,
    Gateway,
    GatewaySettings,
    StoreError,
)
from tests.gateway.harness import FakeCloud


def test_settings_defaults_are_safe(tmp_path: Path) -> None:
    settings = GatewaySettings(id="gw-1", data_dir=tmp_path)

    assert settings.http.host == "127.0.0.1"
    assert settings.http.port == 0
    assert settings.cloud.protocol == "5"
    assert settings.site.prefix == "site"
    assert settings.cloud_keys == []
    assert settings.topic_root == "cy"
    door = DoorSettings(id="d", device="dev")
    assert (door.relay, door.pulse_ms, door.ack_timeout_ms, door.open_grace_ms) == (
        1,
        3000,
        2000,
        500,
    )
    assert door.failure_policy == "fail_secure"


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "gw/1"},
        {"topic_root": "cy/x"},
        {"doors": [{"id": "d", "device": "x", "pulse_ms": 50}]},
        {"doors": [{"id": "d", "device": "x", "pulse_ms": 30_001}]},
        {"doors": [{"id": "d", "device": "x/y"}]},
        {"doors": [{"id": "d", "device": "x", "failure_policy": "fail_open"}]},
        {"doors": [{"id": "d", "device": "x"}, {"id": "d", "device": "y"}]},
        {"doors": [{"id": "d", "device": "x"}, {"id": "e", "device": "x"}]},
        {"site": {"prefix": "site/+"}},
        {"cloud": {"protocol": "4"}},
        {"unknown_key": 1},
    ],
)
def test_settings_refuse_what_cannot_work(tmp_path: Path, bad: dict[str, object]) -> None:
    raw: dict[str, object] = {"id": "gw-1", "data_dir": str(tmp_path), **bad}
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings.model_validate(raw)


def test_broker_password_is_not_printed(tmp_path: Path) -> None:
    settings = GatewaySettings.model_validate(
        {"id": "gw-1", "data_dir": str(tmp_path), "cloud": {"username": "u", "password": "hunter2"}}
    )
    assert "hunter2" not in repr(settings)


async def test_an_unreadable_cloud_key_stops_the_start(
    gateway_settings: Callable[..., GatewaySettings], tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.pub"
    bogus.write_text("this is not a key\n")
    gw = Gateway(gateway_settings(key_files=[bogus]))

    with pytest.raises(ConfigError) as info:
        await gw.start()
    assert info.value.setting == "cloud_keys"


async def test_a_database_of_another_gateway_stops_the_start(
    gateway_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[..., Awaitable[Gateway]],
    tmp_path: Path,
) -> None:
    first = await start_gateway(gateway_settings(data_dir=tmp_path / "shared"))
    await first.stop()

    with pytest.raises(StoreError):
        await Gateway(gateway_settings(data_dir=tmp_path / "shared")).start()


async def test_stop_announces_offline_and_leaves_no_threads(
    gateway_settings: Callable[..., GatewaySettings],
    start_gateway: Callable[..., Awaitable[Gateway]],
    fake_cloud: Callable[..., Awaitable[FakeCloud]],
) -> None:
    before = set(threading.enumerate())
    settings = gateway_settings()
    cloud = await fake_cloud(settings)
    gw = await start_gateway(settings)
    await cloud.wait_for(lambda c: b'{"online":true,"v":1}' in c.statuses)

    await gw.stop()

    await cloud.wait_for(lambda c: c.statuses[-1] == b'{"online":false,"v":1}')
    assert not gw.ready.is_set()
    # The loop's default executor (asyncio_N) is the loop's own and closes with it.
    leaked = [
        t.name
        for t in set(threading.enumerate()) - before
        if "fake-cloud" not in t.name and not t.name.startswith("asyncio_")
    ]
    assert leaked == []
    assert gw.supervisor.states() == dict.fromkeys(gw.supervisor.states(), "stopped")
