"""The private Mosquitto that tests and benchmarks start: up, down, crashed, restarted, refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from courtyard.mosquitto_process import MosquittoProcess
from tests.conftest import require_mosquitto

# An MQTT 3.1.1 CONNECT, clean session, keep-alive 10 s, client id "t".
CONNECT = bytes.fromhex("100d00044d5154540402000a000174")


def _connack(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(CONNECT)
        return s.recv(4)


def test_it_serves_restarts_on_the_same_port_and_cleans_up(tmp_path: Path) -> None:
    require_mosquitto()
    broker = MosquittoProcess("max_inflight_messages 10").start()
    conf_dir = broker.conf.parent
    assert "max_inflight_messages 10" in broker.conf.read_text()
    assert _connack(broker.port) == bytes.fromhex("20020000")  # accepted
    port = broker.port
    broker.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    broker.start()
    assert (broker.port, _connack(broker.port)) == (port, bytes.fromhex("20020000"))
    broker.stop()
    assert broker.proc is None
    assert not conf_dir.exists()  # its temporary directory is gone


def test_a_configuration_it_rejects_is_a_clear_error(tmp_path: Path) -> None:
    require_mosquitto()
    broker = MosquittoProcess("no_such_directive 1", conf_dir=tmp_path)
    with pytest.raises(RuntimeError, match='Unknown configuration variable "no_such_directive"'):
        broker.start()
    assert broker.proc is None
    assert broker.conf.parent == tmp_path
