"""Where door-profile messages travel on the site broker.

Each controller has four topics under a configurable prefix (default ``site``)::

    {prefix}/door/{device}/cmd     gateway -> controller   QoS 1
    {prefix}/door/{device}/ack     controller -> gateway   QoS 1
    {prefix}/door/{device}/event   controller -> gateway   QoS 1
    {prefix}/door/{device}/state   controller -> everyone  QoS 1, retained, last will

`DoorTopics` names one controller's topics, `subscription` gives the wildcard a gateway subscribes
to for one kind across all controllers, and `parse_topic` maps a received topic back to
``(device, kind)``. Prefix levels and device names are restricted to ``[A-Za-z0-9_.:-]`` so a
topic can never smuggle in MQTT wildcards (``+``, ``#``) or extra levels.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final, NamedTuple

from devices.door.errors import DoorProfileError, ErrorReason
from devices.door.profile import is_valid_id

__all__ = [
    "DEFAULT_PREFIX",
    "DoorTopic",
    "DoorTopics",
    "TopicKind",
    "gateway_subscriptions",
    "parse_topic",
    "subscription",
]

DEFAULT_PREFIX: Final = "site"
"""The topic prefix used when none is configured."""

_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}(?:/[A-Za-z0-9_.:-]{1,64}){0,7}")


class TopicKind(enum.StrEnum):
    """The last level of a door topic: which message flows on it."""

    CMD = "cmd"
    ACK = "ack"
    EVENT = "event"
    STATE = "state"


def _check_prefix(prefix: str) -> None:
    if type(prefix) is not str or _PREFIX_PATTERN.fullmatch(prefix) is None:
        raise DoorProfileError(
            ErrorReason.BAD_TOPIC,
            "a prefix is 1..8 levels of 1..64 characters of [A-Za-z0-9_.:-]",
            field="prefix",
        )


def _check_device(device: str) -> None:
    if not is_valid_id(device):
        raise DoorProfileError(
            ErrorReason.BAD_TOPIC,
            "a device name is 1..64 characters of [A-Za-z0-9_.:-]",
            field="device",
        )


@dataclass(frozen=True, slots=True)
class DoorTopics:
    """The four topics of one controller, e.g. ``DoorTopics("site", "b3-gate").cmd``."""

    prefix: str
    device: str

    def __post_init__(self) -> None:
        _check_prefix(self.prefix)
        _check_device(self.device)

    def topic(self, kind: TopicKind) -> str:
        """Return this controller's topic for `kind`."""
        return f"{self.prefix}/door/{self.device}/{kind.value}"

    @property
    def cmd(self) -> str:
        """Commands to the controller."""
        return self.topic(TopicKind.CMD)

    @property
    def ack(self) -> str:
        """The controller's answers to commands."""
        return self.topic(TopicKind.ACK)

    @property
    def event(self) -> str:
        """The controller's events."""
        return self.topic(TopicKind.EVENT)

    @property
    def state(self) -> str:
        """The controller's retained state and last will."""
        return self.topic(TopicKind.STATE)


class DoorTopic(NamedTuple):
    """A received topic, taken apart."""

    device: str
    kind: TopicKind


def subscription(kind: TopicKind, prefix: str = DEFAULT_PREFIX) -> str:
    """Return the wildcard matching `kind` for every controller, e.g. ``site/door/+/event``."""
    _check_prefix(prefix)
    return f"{prefix}/door/+/{kind.value}"


def gateway_subscriptions(prefix: str = DEFAULT_PREFIX) -> tuple[str, str, str]:
    """Return the wildcards a gateway subscribes to: every controller's ack, event and state."""
    return (
        subscription(TopicKind.ACK, prefix),
        subscription(TopicKind.EVENT, prefix),
        subscription(TopicKind.STATE, prefix),
    )


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> DoorTopic:
    """Map a concrete topic under `prefix` to ``(device, kind)``, or raise `DoorProfileError`."""
    _check_prefix(prefix)
    head = f"{prefix}/door/"
    if type(topic) is not str or not topic.startswith(head):
        raise DoorProfileError(ErrorReason.BAD_TOPIC, "not a door topic under this prefix")
    device, slash, last = topic[len(head) :].partition("/")
    if not slash or not is_valid_id(device):
        raise DoorProfileError(ErrorReason.BAD_TOPIC, "bad device level", field="device")
    try:
        kind = TopicKind(last)
    except ValueError:
        raise DoorProfileError(ErrorReason.BAD_TOPIC, "unknown topic kind", field="kind") from None
    return DoorTopic(device, kind)
