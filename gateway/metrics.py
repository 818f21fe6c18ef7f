"""The gateway's Prometheus metrics, in a registry private to one gateway instance.

A process-global registry would make two gateways in one process (tests, the demo) share and
double-count series, and would refuse the second registration outright. Each :class:`Gateway`
therefore owns a :class:`GatewayMetrics`; components receive it and count on it, and live values
(outbox depth, link reconnects, task restarts) are read at scrape time from the objects that own
them instead of being copied into gauges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.bus_stats import DeviceSnapshot

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _LiveCollector(Collector):
    """Reads current values from callables at scrape time."""

    def __init__(self) -> None:
        self.outbox_depth: Callable[[], int] = lambda: 0
        self.link_connects: dict[str, Callable[[], int]] = {}
        self.task_restarts: Callable[[], dict[str, int]] = dict
        self.bus_devices: Callable[[], Sequence[DeviceSnapshot]] = list
        self.bus_ports: Callable[[], dict[str, bool | None]] = dict

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "courtyard_gateway_outbox_depth", "Events in the outbox awaiting the cloud's ack."
        )
        depth.add_metric([], self.outbox_depth())
        yield depth
        reconnects = CounterMetricFamily(
            "courtyard_gateway_link_reconnects",
            "Times an MQTT link reconnected after its first connection.",
            labels=["link"],
        )
        for name, connects in sorted(self.link_connects.items()):
            reconnects.add_metric([name], max(0, connects() - 1))
        yield reconnects
        restarts = CounterMetricFamily(
            "courtyard_gateway_task_restarts",
            "Times a supervised task crashed and was restarted.",
            labels=["task"],
        )
        for task, count in sorted(self.task_restarts().items()):
            restarts.add_metric([task], count)
        yield restarts
        yield from self._bus_metrics()

    def _bus_metrics(self) -> Iterable[Metric]:
        # Read from the owners' statistics at scrape time: one source of truth, no double counting.
        up = GaugeMetricFamily(
            "courtyard_gateway_bus_up",
            "1 while the bus's port is open and working.",
            labels=["bus"],
        )
        for bus, state in sorted(self.bus_ports().items()):
            up.add_metric([bus], 1 if state else 0)
        yield up
        families = {
            name: CounterMetricFamily(
                f"courtyard_gateway_bus_device_{name}", text, labels=["bus", "device"]
            )
            for name, text in (
                ("requests", "Requests (attempts) sent to the device."),
                ("replies", "Accepted replies from the device."),
                ("timeouts", "Attempts that ended without an accepted reply."),
                ("checksum_errors", "Frames from the device's exchanges with a bad checksum."),
                ("garbage_bytes", "Noise bytes received during the device's exchanges."),
            )
        }
        online = GaugeMetricFamily(
            "courtyard_gateway_bus_device_online",
            "1 online, 0 offline (absent while unknown).",
            labels=["bus", "device"],
        )
        for snap in self.bus_devices():
            labels = [snap.bus, snap.device]
            for name, family in families.items():
                family.add_metric(labels, getattr(snap, name))
            if snap.online is not None:
                online.add_metric(labels, 1 if snap.online else 0)
        yield from families.values()
        yield online


class GatewayMetrics:
    """Counters of one gateway, registered in their own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commands_accepted = Counter(
            "courtyard_gateway_commands_accepted",
            "Signed commands that passed verification and the replay guard.",
            registry=r,
        )
        self.commands_refused = Counter(
            "courtyard_gateway_commands_refused",
            "Signed commands refused, by refusal reason.",
            ["reason"],
            registry=r,
        )
        self.command_outcomes = Counter(
            "courtyard_gateway_command_outcomes",
            "Terminal outcomes of accepted door commands.",
            ["status"],
            registry=r,
        )
        self.events_outboxed = Counter(
            "courtyard_gateway_events_outboxed",
            "Events committed to the outbox, by event type.",
            ["type"],
            registry=r,
        )
        self.events_acked = Counter(
            "courtyard_gateway_events_acked",
            "Outbox events deleted after the cloud's application-level ack.",
            registry=r,
        )
        self.batches_sent = Counter(
            "courtyard_gateway_batches_sent",
            "Event batches published to the cloud (including resends).",
            registry=r,
        )
        self.batch_resends = Counter(
            "courtyard_gateway_batch_resends",
            "Times the uplink went back to resend unacknowledged events.",
            registry=r,
        )
        self.bad_messages = Counter(
            "courtyard_gateway_bad_messages",
            "Messages dropped because they failed to parse, by source.",
            ["source"],
            registry=r,
        )
        self.bus_latency = Histogram(
            "courtyard_gateway_bus_latency_seconds",
            "Request to accepted reply, per device.",
            ["bus", "device"],
            # Few buckets: thousands of meters times every bucket is a lot of series.
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0),
            registry=r,
        )
        self._live = _LiveCollector()
        r.register(self._live)

    def watch_outbox_depth(self, read: Callable[[], int]) -> None:
        """Report ``read()`` as the outbox depth gauge."""
        self._live.outbox_depth = read

    def watch_link(self, name: str, connects: Callable[[], int]) -> None:
        """Report reconnects of the link named ``name`` from its connect count."""
        self._live.link_connects[name] = connects

    def watch_task_restarts(self, read: Callable[[], dict[str, int]]) -> None:
        """Report per-task restart counts."""
        self._live.task_restarts = read

    def watch_buses(
        self,
        devices: Callable[[], Sequence[DeviceSnapshot]],
        ports: Callable[[], dict[str, bool | None]],
    ) -> None:
        """Report per-device bus statistics and per-bus port state from their owners."""
        self._live.bus_devices = devices
        self._live.bus_ports = ports

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
