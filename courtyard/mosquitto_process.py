"""A private ``mosquitto -c FILE`` on a free 127.0.0.1 port, for tests and benchmarks.

Tests that need their own broker configuration (ACLs, TLS, a crash, a stall) and the benchmarks
(production tuning) each start one. It listens on 127.0.0.1 only, keeps nothing on disk, and can
be stopped, killed the way a crash would, paused (SIGSTOP: connections stay open, nothing is
answered) and started again on the same port.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from courtyard.embedded_broker import free_port

__all__ = ["MosquittoProcess", "mosquitto_binary"]


def mosquitto_binary() -> str | None:
    """The ``mosquitto`` executable (PATH, then Debian's /usr/sbin), or None if not installed."""
    exe = shutil.which("mosquitto")
    if exe is None and Path("/usr/sbin/mosquitto").exists():
        exe = "/usr/sbin/mosquitto"
    return exe


class MosquittoProcess:
    """One private broker: its configuration is written at construction, :meth:`start` runs it.

    ``extra`` is appended to the configuration (one directive per line). ``conf_dir`` holds the
    file (a temporary directory, removed by :meth:`stop`, when not given).
    """

    def __init__(
        self, extra: str = "", *, conf_dir: Path | None = None, start_within_s: float = 10.0
    ) -> None:
        exe = mosquitto_binary()
        if exe is None:
            raise FileNotFoundError("mosquitto is not installed")
        self.exe = exe
        self.port = free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if conf_dir is None:
            self._tmp = tempfile.TemporaryDirectory()
            conf_dir = Path(self._tmp.name)
        self.conf = conf_dir / f"mosquitto-{self.port}.conf"
        # Its log goes to a file: a pipe nobody reads would stall a busy broker once it is full.
        self.log = conf_dir / f"mosquitto-{self.port}.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            f"persistence false\n{extra}\n"
        )
        self._start_within_s = start_within_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MosquittoProcess:
        """Run the broker and return once it accepts connections (raises if it exits first)."""
        with self.log.open("ab") as log:
            # The argv is the installed mosquitto and a file we wrote: no outside input.
            self.proc = subprocess.Popen(  # noqa: S603
                [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + self._start_within_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                self.proc = None
                tail = self.log.read_text(errors="replace")[-2000:].strip()
                raise RuntimeError(f"mosquitto exited: {tail}")
            # A child binding its port offers nothing to wait on but the port itself.
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("private mosquitto did not start")

    def pause(self) -> None:
        """Freeze the broker: connections stay open, nothing is answered (a stalled broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused broker carry on where it stopped."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the broker (paused or not) the way a crash would; it may be started again."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        """Terminate the broker and remove a temporary configuration directory."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
