"""Door tests against a real MQTT broker, watched by an independent paho client.

`door_broker` is Mosquitto on 127.0.0.1:1883 when it is up; otherwise a private ``mosquitto -c``
on a free loopback port (or a failure, under ``COURTYARD_REQUIRE_SERVICES=1``; or a skip when the
binary is missing). `door_site` gives each test its own topic prefix, starts simulators and
observers for it, and on the way out stops them and clears the retained states it left behind,
because the shared broker persists retained messages.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.devices.door.door_mqtt import DoorSite


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def door_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(host, port) of a Mosquitto broker."""
    if _port_open("127.0.0.1", 1883):
        yield ("127.0.0.1", 1883)
        return
    if os.environ.get("COURTYARD_REQUIRE_SERVICES") == "1":
        pytest.fail("Mosquitto on 127.0.0.1:1883 is required (COURTYARD_REQUIRE_SERVICES=1)")
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if binary is None:
        pytest.skip("no Mosquitto on 127.0.0.1:1883 and no mosquitto binary")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "set_tcp_nodelay true\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"private mosquitto did not start on port {port}")
            time.sleep(0.02)  # polling a port we just asked a process to open; no event to wait on
        yield ("127.0.0.1", port)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def door_site(door_broker: tuple[str, int]) -> Iterator[DoorSite]:
    """A fresh topic prefix on the broker, cleaned up after the test."""
    host, port = door_broker
    site = DoorSite(host, port)
    try:
        yield site
    finally:
        site.close()
