"""A private Mosquitto for benchmarks, configured as production should be (docs/operations.md)."""

from __future__ import annotations

from courtyard.mosquitto_process import MosquittoProcess

__all__ = ["PRODUCTION_TUNING", "PrivateMosquitto"]

#: On top of every private broker's ``set_tcp_nodelay true`` (without it a QoS 1 request/response
#: waits out Nagle plus delayed ACK, ~40-90 ms): deep queues and a wide in-flight window.
PRODUCTION_TUNING = "max_queued_messages 100000\nmax_inflight_messages 100\n"


class PrivateMosquitto(MosquittoProcess):
    """``mosquitto -c FILE`` on a free 127.0.0.1 port, running once constructed; :meth:`stop`."""

    def __init__(self, extra: str = PRODUCTION_TUNING) -> None:
        super().__init__(extra)
        self.start()
