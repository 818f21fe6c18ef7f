"""The gateway⇄cloud wire: topics, event batches and acks, signed commands, the command lifecycle.

Shared by both sides. Everything here is sans-I/O except :mod:`cloud_sync.protocol.link`, the one
module that talks to an MQTT broker.
"""

from cloud_sync.protocol.commands import (
    ACTIONS,
    MAX_LIFETIME_MS,
    SIGNING_DOMAIN,
    CommandBody,
    sign_command,
    verify_command,
)
from cloud_sync.protocol.errors import (
    CommandRefused,
    IllegalTransition,
    LinkError,
    RefusalReason,
    SyncError,
    SyncProtocolError,
)
from cloud_sync.protocol.events import MAX_BATCH_EVENTS, Ack, Event, EventBatch, coalesce_ranges
from cloud_sync.protocol.lifecycle import TERMINAL, CommandStatus, advance, can_advance
from cloud_sync.protocol.link import Message, MqttLink, Will, topic_matches
from cloud_sync.protocol.topics import DEFAULT_ROOT, GatewayTopics, cloud_subscriptions, gateway_of

__all__ = [
    "ACTIONS",
    "DEFAULT_ROOT",
    "MAX_BATCH_EVENTS",
    "MAX_LIFETIME_MS",
    "SIGNING_DOMAIN",
    "TERMINAL",
    "Ack",
    "CommandBody",
    "CommandRefused",
    "CommandStatus",
    "Event",
    "EventBatch",
    "GatewayTopics",
    "IllegalTransition",
    "LinkError",
    "Message",
    "MqttLink",
    "RefusalReason",
    "SyncError",
    "SyncProtocolError",
    "Will",
    "advance",
    "can_advance",
    "cloud_subscriptions",
    "coalesce_ranges",
    "gateway_of",
    "sign_command",
    "topic_matches",
    "verify_command",
]
