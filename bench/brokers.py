"""A private Mosquitto for benchmarks, configured as production should be."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from courtyard.embedded_broker import free_port

__all__ = ["PRODUCTION_TUNING", "PrivateMosquitto"]

#: Without set_tcp_nodelay a QoS 1 request/response waits out Nagle plus delayed ACK (~40-90 ms).
PRODUCTION_TUNING = "set_tcp_nodelay true\nmax_queued_messages 100000\nmax_inflight_messages 100\n"


class PrivateMosquitto:
    """``mosquitto -c FILE`` on a free 127.0.0.1 port, stopped on exit."""

    def __init__(self, extra: str = PRODUCTION_TUNING) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed")
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory()
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"
        )
        self._proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("private mosquitto did not start")

    def stop(self) -> None:
        """Terminate the broker."""
        self._proc.terminate()
        self._proc.wait(10)
        self._dir.cleanup()
