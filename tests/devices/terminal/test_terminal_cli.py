"""``courtyard sim terminal``: a real subprocess, driven through stdin, watched by a gateway."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from typing import IO

from devices.terminal import (
    KeypadEvent,
    ShowDisplay,
    TerminalOffline,
    TerminalState,
    Tone,
    gateway_subscriptions,
)
from tests.devices.terminal.terminal_mqtt import TIMEOUT, TerminalSite


def pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def test_sim_terminal_sends_typed_codes_and_prints_displays(terminal_site: TerminalSite) -> None:
    topics = terminal_site.topics("term-cli")
    gateway = terminal_site.gateway(*gateway_subscriptions(terminal_site.prefix))
    options = {
        "--device": topics.device,
        "--prefix": terminal_site.prefix,
        "--host": terminal_site.host,
        "--port": str(terminal_site.port),
    }
    command = [sys.executable, "-m", "courtyard", "sim", "terminal"]
    command += [part for option in options.items() for part in option]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdin is not None
    assert process.stdout is not None
    printed: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=pump, args=(process.stdout, printed), daemon=True)
    reader.start()
    try:
        assert gateway.state_until(topics, lambda s: s.online) == TerminalState(fw="sim-1.0")
        assert "online" in printed.get(timeout=TIMEOUT)

        process.stdin.write("code 00012345\n")
        process.stdin.flush()
        event = gateway.event(topics)
        assert isinstance(event, KeypadEvent)
        assert event.text == "00012345"
        assert printed.get(timeout=TIMEOUT) == f"sent code {event.id}"
        gateway.show(topics, ShowDisplay(text="Wrong code", tone=Tone.ERROR, ref=event.id))
        assert printed.get(timeout=TIMEOUT) == f"[error] Wrong code  (re {event.id})"

        process.stdin.write("quit\n")
        process.stdin.flush()
        assert process.wait(TIMEOUT * 2) == 0
        assert gateway.state_until(topics, lambda s: not s.online) == TerminalOffline()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        reader.join(TIMEOUT)
        process.stdout.close()
