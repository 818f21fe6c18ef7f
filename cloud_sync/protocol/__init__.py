"""The gateway⇄cloud wire: topics, event batches and acks, signed commands, the command lifecycle.

Shared by both sides. Everything here is sans-I/O except :mod:`cloud_sync.protocol.link`, the one
module that talks to an MQTT broker.
"""

from cloud_sync.protocol.commands import (
    ACTION_SPECS,
    ACTIONS,
    MAX_LIFETIME_MS,
    SIGNING_DOMAIN,
    ActionSpec,
    CommandBody,
    check_args,
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
from cloud_sync.protocol.pickup_code import (
    PickupCodeExhausted,
    choose_code,
    code_index,
    derive_code,
    derive_site_code_key,
)
from cloud_sync.protocol.tokens import (
    MAX_TOKEN_CHARS,
    TOKEN_DOMAIN,
    CourierPass,
    PickupToken,
    Token,
    TokenRefusal,
    TokenRefused,
    sign_token,
    verify_token,
)
from cloud_sync.protocol.topics import DEFAULT_ROOT, GatewayTopics, cloud_subscriptions, gateway_of

__all__ = [
    "ACTIONS",
    "ACTION_SPECS",
    "DEFAULT_ROOT",
    "MAX_BATCH_EVENTS",
    "MAX_LIFETIME_MS",
    "MAX_TOKEN_CHARS",
    "SIGNING_DOMAIN",
    "TERMINAL",
    "TOKEN_DOMAIN",
    "Ack",
    "ActionSpec",
    "CommandBody",
    "CommandRefused",
    "CommandStatus",
    "CourierPass",
    "Event",
    "EventBatch",
    "GatewayTopics",
    "IllegalTransition",
    "LinkError",
    "Message",
    "MqttLink",
    "PickupCodeExhausted",
    "PickupToken",
    "RefusalReason",
    "SyncError",
    "SyncProtocolError",
    "Token",
    "TokenRefusal",
    "TokenRefused",
    "Will",
    "advance",
    "can_advance",
    "check_args",
    "choose_code",
    "cloud_subscriptions",
    "coalesce_ranges",
    "code_index",
    "derive_code",
    "derive_site_code_key",
    "gateway_of",
    "sign_command",
    "sign_token",
    "topic_matches",
    "verify_command",
    "verify_token",
]
