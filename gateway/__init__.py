"""The on-site gateway daemon: door driver, replay guard, outbox, uplink, health.

Data flows one way: controller bytes → door profile codec → door driver → store and outbox →
uplink → cloud; signed commands flow back: cloud → verification and replay guard (committed) →
door driver → a timed pulse. :class:`Gateway` wires it all and runs it under one supervisor.
"""

from gateway.command_log import CommandLog
from gateway.daemon import VERSION, Gateway
from gateway.errors import ConfigError, GatewayError, StoreError, UnknownDoorError
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.replay import ReplayGuard, ReplayState
from gateway.settings import (
    BrokerSettings,
    DoorSettings,
    GatewaySettings,
    HttpSettings,
    SiteBrokerSettings,
    UplinkSettings,
)
from gateway.store import Store, Transaction
from gateway.supervisor import Supervisor

__all__ = [
    "VERSION",
    "BrokerSettings",
    "CommandLog",
    "ConfigError",
    "DoorSettings",
    "Gateway",
    "GatewayError",
    "GatewayMetrics",
    "GatewaySettings",
    "HttpSettings",
    "Outbox",
    "ReplayGuard",
    "ReplayState",
    "SiteBrokerSettings",
    "Store",
    "StoreError",
    "Supervisor",
    "Transaction",
    "UnknownDoorError",
    "UplinkSettings",
]
