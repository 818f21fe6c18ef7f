"""The gateway's Prometheus metrics, in a registry private to one gateway instance.

A process-global registry would make two gateways in one process (tests, the demo) share and
double-count series, and would refuse the second registration outright. Each :class:`Gateway`
therefore owns a :class:`GatewayMetrics`; components receive it and count on it, and live values
(outbox depth, link reconnects, task restarts) are read at scrape time from the objects that own
them instead of being copied into gauges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _LiveCollector(Collector):
    """Reads current values from callables at scrape time."""

    def __init__(self) -> None:
        self.outbox_depth: Callable[[], int] = lambda: 0
        self.link_connects: dict[str, Callable[[], int]] = {}
        self.task_restarts: Callable[[], dict[str, int]] = dict

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

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
