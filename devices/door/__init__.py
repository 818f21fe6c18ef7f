"""IP door controllers: the JSON-over-MQTT door profile and a door controller simulator.

The profile (`profile`, `topics`, `errors`) is a pure codec: typed messages in, bytes out, and
back, with no I/O. The simulator plays a controller on a real broker: `controller` holds its logic
(sans-I/O), `link` its paho connection, and `simulator` the worker thread that runs both. The
wire format is documented in ``docs/door-profile.md``.
"""

from devices.door.behaviour import Behaviour
from devices.door.controller import DoorController, Outbound
from devices.door.errors import DoorProfileError, ErrorReason
from devices.door.link import MqttProtocol
from devices.door.profile import (
    MAX_PAYLOAD_BYTES,
    MAX_PULSE_MS,
    MAX_RELAY,
    MAX_SAFE_INT,
    MIN_PULSE_MS,
    MIN_RELAY,
    PROFILE_VERSION,
    AckError,
    Command,
    CommandAck,
    DoorEvent,
    DoorOffline,
    DoorPosition,
    DoorState,
    EventType,
    Message,
    PulseCommand,
    StatusCommand,
    StrikeState,
    encode,
    is_valid_id,
    parse_ack,
    parse_command,
    parse_event,
    parse_state,
)
from devices.door.simulator import DoorSimulator, SimulatorSnapshot, run_simulators
from devices.door.topics import (
    DEFAULT_PREFIX,
    DoorTopic,
    DoorTopics,
    TopicKind,
    gateway_subscriptions,
    parse_topic,
    subscription,
)

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_PAYLOAD_BYTES",
    "MAX_PULSE_MS",
    "MAX_RELAY",
    "MAX_SAFE_INT",
    "MIN_PULSE_MS",
    "MIN_RELAY",
    "PROFILE_VERSION",
    "AckError",
    "Behaviour",
    "Command",
    "CommandAck",
    "DoorController",
    "DoorEvent",
    "DoorOffline",
    "DoorPosition",
    "DoorProfileError",
    "DoorSimulator",
    "DoorState",
    "DoorTopic",
    "DoorTopics",
    "ErrorReason",
    "EventType",
    "Message",
    "MqttProtocol",
    "Outbound",
    "PulseCommand",
    "SimulatorSnapshot",
    "StatusCommand",
    "StrikeState",
    "TopicKind",
    "encode",
    "gateway_subscriptions",
    "is_valid_id",
    "parse_ack",
    "parse_command",
    "parse_event",
    "parse_state",
    "parse_topic",
    "run_simulators",
    "subscription",
]
