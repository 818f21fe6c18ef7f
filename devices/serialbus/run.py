"""Serving a bus from a command line: block until Ctrl-C or an event, then stop cleanly."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Final

from devices.serialbus.device import BusDevice, RequestFramer
from devices.serialbus.server import BusServer

__all__ = ["run_bus"]

_log = logging.getLogger(__name__)

_POLL_S: Final = 0.1


def run_bus(
    framer: RequestFramer,
    devices: Sequence[BusDevice],
    *,
    baud: int = 2400,
    char_bits: int = 11,
    pace: bool = False,
    turnaround_ms: float = 5.0,
    host: str = "127.0.0.1",
    port: int = 0,
    pty: bool = False,
    seed: int | None = None,
    stop: threading.Event | None = None,
    ready: Callable[[BusServer], None] | None = None,
) -> None:
    """Serve a bus until Ctrl-C or ``stop`` is set; ``ready(server)`` runs once it listens.

    For command lines (``courtyard sim …``): ``ready`` typically prints ``server.url`` and the
    device addresses. A crash of the bus thread ends the call with that exception.
    """
    server = BusServer(
        framer,
        devices,
        baud=baud,
        char_bits=char_bits,
        pace=pace,
        turnaround_ms=turnaround_ms,
        host=host,
        port=port,
        pty=pty,
        seed=seed,
    )
    stop_event = stop if stop is not None else threading.Event()
    server.start()
    try:
        if ready is not None:
            ready(server)
        # Event.wait with a timeout stays interruptible by Ctrl-C and notices a crashed thread.
        while server.alive and not stop_event.wait(_POLL_S):
            pass
    except KeyboardInterrupt:
        _log.info("interrupted; stopping the bus on %s", server.url)
    finally:
        server.stop()
